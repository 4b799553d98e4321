using System.Globalization;
using Peft.Fuzz;

// peft loader fuzzer (docs/reliability.md)
//   run [--quick | --cases N] [--seed S] [--kinds a,b] [--case-timeout SECONDS] [--parallel P] [--report FILE] [--work DIR] [--keep]
//   worker --kind K --seed S --from I --to J --work DIR [--keep]      (one process per kind; started by run)
//   list                                                             (the registered file kinds)
var command = args.Length == 0 ? "run" : args[0];
var options = ParseOptions(args.Skip(args.Length == 0 || args[0].StartsWith('-') ? 0 : 1).ToArray());
switch (command)
{
    case "worker":
    {
        var kind = FileKinds.All.FirstOrDefault(k => k.Name == Get("--kind"))
            ?? throw new ArgumentException($"--kind must be one of {string.Join(", ", FileKinds.All.Select(k => k.Name))}");
        return Worker.Run(kind, int.Parse(Get("--seed") ?? "20250101", CultureInfo.InvariantCulture),
            int.Parse(Get("--from") ?? "0", CultureInfo.InvariantCulture), int.Parse(Get("--to") ?? "1", CultureInfo.InvariantCulture),
            Path.GetFullPath(Get("--work") ?? Path.Combine(Path.GetTempPath(), "peft-fuzz-worker")), options.ContainsKey("--keep"));
    }
    case "list":
        foreach (var kind in FileKinds.All) Console.WriteLine($"{kind.Name,-22} {kind.Description}");
        return 0;
    case "run" or "--quick" or "--cases" or "--seed" or "--kinds":
    {
        int cases = options.ContainsKey("--quick") ? 30 : int.Parse(Get("--cases") ?? "30", CultureInfo.InvariantCulture);
        var run = new RunOptions
        {
            CasesPerKind = cases,
            Seed = int.Parse(Get("--seed") ?? "20250101", CultureInfo.InvariantCulture),
            Kinds = Get("--kinds")?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
            CaseTimeout = TimeSpan.FromSeconds(double.Parse(Get("--case-timeout") ?? "30", CultureInfo.InvariantCulture)),
            Parallel = int.Parse(Get("--parallel") ?? Math.Max(1, Environment.ProcessorCount).ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture),
            KeepWork = options.ContainsKey("--keep"),
        };
        if (Get("--work") is { } work) run = run with { Work = Path.GetFullPath(work) };
        Console.WriteLine($"peft fuzz: {run.CasesPerKind} cases per kind, seed {run.Seed}, {run.Parallel} worker(s) at a time, work {run.Work}");
        var report = Orchestrator.Run(run, Console.Out);
        var markdown = report.ToMarkdown();
        Console.WriteLine();
        Console.WriteLine(markdown);
        if (Get("--report") is { } path)
        {
            File.WriteAllText(path, report.ToJson());
            File.WriteAllText(Path.ChangeExtension(path, ".md"), markdown);
            File.WriteAllLines(Path.ChangeExtension(path, ".cases.jsonl"), report.CaseLines());
        }
        return report.Failures.Count == 0 ? 0 : 1;
    }
    default:
        Console.Error.WriteLine($"unknown command '{command}' (run, worker, list)");
        return 2;
}

string? Get(string name) => options.TryGetValue(name, out var value) ? value : null;

static Dictionary<string, string?> ParseOptions(string[] args)
{
    var result = new Dictionary<string, string?>(StringComparer.Ordinal);
    for (int i = 0; i < args.Length; i++)
    {
        if (!args[i].StartsWith("--", StringComparison.Ordinal)) throw new ArgumentException($"unexpected argument '{args[i]}'");
        bool flag = i + 1 >= args.Length || args[i + 1].StartsWith("--", StringComparison.Ordinal);
        result[args[i]] = flag ? null : args[++i];
    }
    return result;
}
