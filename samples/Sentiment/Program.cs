using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Text;
using System.Text.Json;
using Peft.Data;
using Peft.Models.UseLite;
using Sentiment;
using TorchSharp;

// Compares ways of fine-tuning the Universal Sentence Encoder lite for sentiment on npm sentiment@5.0.2's IMDb/Amazon/Yelp
// sentences (80/20 split, fixed): the methods registered in SentimentMethods.All. Each run (method, seed) is a child
// process of this program, so its peak resident memory (VmHWM) is its own.
//
//   dotnet run -c Release --project samples/Sentiment                                   # the quick default set, 1 seed
//   dotnet run -c Release --project samples/Sentiment -- --all --seeds 3 --doc docs/sentiment.md   # the doc's table
//   dotnet run -c Release --project samples/Sentiment -- --method lora,prompt --seeds 3 --epochs 2
//   dotnet run -c Release --project samples/Sentiment -- --method lora --save out/sentiment       # PEFT adapter + head
if (args is ["--help"] or ["-h"])
{
    Console.WriteLine(Options.Usage);
    return 0;
}

var options = Options.Parse(args, out string? error);
if (options is null)
{
    if (error is not null) Console.Error.WriteLine(error);
    Console.Error.WriteLine(Options.Usage);
    return 2;
}

var cache = new NpmPackageCache();
if (options.Child is SentimentMethod childMethod)
{
    // Child: train one method with one seed (--seed) on a freshly loaded encoder, print the result as one JSON line.
    long hwmStart = PeakRss();
    var examples = await SentimentData.LoadAsync(cache);
    var (train, test) = SentimentData.Split(examples);
    using var model = await UseLiteModel.LoadAsync(cache);
    long hwmLoaded = PeakRss();
    double learningRate = options.LearningRate ?? childMethod.LearningRate;
    var settings = new SentimentSettings(options.Epochs, options.BatchSize, learningRate, options.Seed);
    var result = SentimentExperiment.Run(model, childMethod, train, test, settings, Console.Error, options.SaveDirectory);
    Console.WriteLine(JsonSerializer.Serialize(new SeedRun(result, learningRate, hwmStart, hwmLoaded, PeakRss())));
    return 0;
}

// Parent: make sure both packages are in the cache (children then never download), then one child per method.
var clock = Stopwatch.StartNew();
var started = DateTime.UtcNow;
var all = await SentimentData.LoadAsync(cache);
var (trainAll, testAll) = SentimentData.Split(all);
using (await UseLiteModel.LoadAsync(cache)) { }
Console.Error.WriteLine($"{all.Count} sentences: {trainAll.Count} train, {testAll.Count} test; {torch.get_num_threads()} torch threads; " +
    $"methods {string.Join(", ", options.Methods.Select(m => m.Name))}; seeds {string.Join(", ", options.SeedList)}");
var rows = new List<MethodRuns>();
foreach (var method in options.Methods)
{
    // One child process per seed, so each run's memory high-water mark is its own.
    var runs = new MethodRuns(method.Name, options.SeedList.Select(seed => RunChild(method, seed, options)).ToList());
    rows.Add(runs);
    var interval = runs.Interval;
    Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"{method.Name}: accuracy {Percent(interval.Mean)}{(interval.HasInterval ? $" [{Percent(interval.Low)}, {Percent(interval.High)}]" : string.Empty)} " +
        $"(seeds: {string.Join(", ", runs.Results.Select(r => Percent(r.Accuracy)))}), {runs.Results.Average(r => r.SecondsPerEpoch):F1} s/epoch, peak {Mib(runs.PeakAfter):F0} MiB"));
}

clock.Stop();
string report = Report(rows, options, trainAll.Count, testAll.Count, started, clock.Elapsed);
Console.WriteLine(report);
if (options.DocPath is string doc) WriteIntoDoc(doc, report);
return 0;

static SeedRun RunChild(SentimentMethod method, int seed, Options options)
{
    string exe = Environment.ProcessPath ?? throw new InvalidOperationException("The process path is unknown.");
    var start = new ProcessStartInfo(exe) { RedirectStandardOutput = true, UseShellExecute = false };
    if (Path.GetFileNameWithoutExtension(exe) == "dotnet") start.ArgumentList.Add(Assembly.GetEntryAssembly()!.Location);
    foreach (var a in options.ChildArguments(method, seed)) start.ArgumentList.Add(a);
    using var process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start {exe}.");
    string output = process.StandardOutput.ReadToEnd();
    process.WaitForExit();
    if (process.ExitCode != 0) throw new InvalidOperationException($"The {method.Name} run (seed {seed}) failed with exit code {process.ExitCode}.");
    string last = output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)[^1];
    return JsonSerializer.Deserialize<SeedRun>(last) ?? throw new InvalidOperationException($"The {method.Name} run (seed {seed}) printed no result.");
}

static long PeakRss()
{
    // VmHWM: the process's resident-set high-water mark (Linux); PeakWorkingSet64 elsewhere.
    const string status = "/proc/self/status";
    if (File.Exists(status))
    {
        foreach (var line in File.ReadLines(status))
        {
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                return long.Parse(line["VmHWM:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
        }
    }
    using var self = Process.GetCurrentProcess();
    return self.PeakWorkingSet64;
}

static string LoadAverage() =>
    File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "unknown";

static double Mib(long bytes) => bytes / (1024.0 * 1024.0);

static string Percent(double accuracy) => (100 * accuracy).ToString("F1", CultureInfo.InvariantCulture);

static string Report(IReadOnlyList<MethodRuns> rows, Options options, int train, int test, DateTime started, TimeSpan wall)
{
    var s = new StringBuilder();
    string seeds = options.Seeds == 1 ? $"seed {options.Seed}" : $"{options.Seeds} seeds ({string.Join(", ", options.SeedList)})";
    s.AppendLine(CultureInfo.InvariantCulture, $"Machine: {Environment.ProcessorCount} cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}, " +
        $"{System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture}, .NET {Environment.Version}, TorchSharp CPU, {torch.get_num_threads()} threads. " +
        $"Date: {started:yyyy-MM-dd}, {started:HH:mm}-{DateTime.UtcNow:HH:mm} UTC. Data: {train} train / {test} test sentences. " +
        $"Load average (1, 5, 15 min) at the end: {LoadAverage()}. Whole run: {wall.TotalSeconds:F0} s wall. " +
        $"Settings: {options.Epochs} epoch{(options.Epochs == 1 ? "" : "s")}, batch {options.BatchSize}, {seeds}, AdamW, 10% warmup + cosine, grad-norm clip 1.");
    s.AppendLine();
    s.AppendLine("| method | held-out accuracy: mean [95% interval over seeds] | per seed | before training | trainable parameters | learning rate | time per epoch | peak RSS | peak RSS growth in training | mean train loss (first / last epoch) |");
    s.AppendLine("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    foreach (var r in rows)
    {
        var interval = r.Interval;
        string accuracy = interval.HasInterval ? $"{Percent(interval.Mean)} % [{Percent(interval.Low)}, {Percent(interval.High)}]" : $"{Percent(interval.Mean)} % (one seed)";
        var first = r.Results[0];
        double firstLoss = r.Results.Average(x => x.FirstLoss), lastLoss = r.Results.Average(x => x.LastLoss);
        s.AppendLine(CultureInfo.InvariantCulture,
            $"| {SentimentMethods.Get(r.Method).DisplayName} | {accuracy} | {string.Join(" / ", r.Results.Select(x => Percent(x.Accuracy)))} | " +
            $"{string.Join(" / ", r.Results.Select(x => Percent(x.AccuracyBefore)).Distinct())} % | {first.TrainableParameters:N0} | {r.LearningRate:G3} | " +
            $"{r.Results.Average(x => x.SecondsPerEpoch):F1} s | {Mib(r.PeakAfter):F0} MiB | +{Mib(r.PeakGrowth):F0} MiB | " +
            $"{(options.Epochs == 1 ? lastLoss.ToString("F3", CultureInfo.InvariantCulture) : string.Create(CultureInfo.InvariantCulture, $"{firstLoss:F3} / {lastLoss:F3}"))} |");
    }

    s.AppendLine();
    double typical = rows.Average(r => r.Interval.Mean);
    s.AppendLine(CultureInfo.InvariantCulture,
        $"Intervals: mean ± t(0.975, n - 1) · sd / √n over the n = {options.Seeds} training seed{(options.Seeds == 1 ? "" : "s")}. The seed sets the head's and the " +
        $"adapter's initialisation, the batch order and the trainer; the split and the test sentences are the same in every run, so an interval covers the " +
        $"variation of training, not of the test set. One run's accuracy near {Percent(typical)} % on {test} sentences has a binomial standard error of " +
        $"{Percent(SentimentStatistics.BinomialStandardError(typical, test))} points (one sentence is {100.0 / test:F2} points), which more seeds do not reduce.");
    s.AppendLine();
    if (options.Seeds == 1)
    {
        s.AppendLine("Orderings: none claimed (one seed gives no interval; run --seeds 3 or more).");
    }
    else
    {
        var orderings = SentimentStatistics.SupportedOrderings(rows.Select(r => (SentimentMethods.Get(r.Method).DisplayName, r.Interval)).ToList());
        s.AppendLine(orderings.Count == 0
            ? "Orderings the intervals support: none (every pair of intervals overlaps)."
            : "Orderings the intervals support (non-overlapping intervals; every other pair overlaps and is not ordered): " +
              string.Join("; ", orderings.Select(o => $"{o.Higher} > {o.Lower}")) + ".");
    }

    return s.ToString();
}

static void WriteIntoDoc(string path, string table)
{
    const string begin = "<!-- sentiment-results:begin -->", end = "<!-- sentiment-results:end -->";
    string text = File.ReadAllText(path);
    int i = text.IndexOf(begin, StringComparison.Ordinal), j = text.IndexOf(end, StringComparison.Ordinal);
    if (i < 0 || j < i) throw new InvalidOperationException($"{path} has no {begin} ... {end} section to replace.");
    Peft.Checkpoints.AtomicFile.WriteAllText(path, text[..(i + begin.Length)] + "\n" + table + text[j..]);
    Console.Error.WriteLine($"wrote the table into {path}");
}

/// <summary>One run (one method, one seed) with its learning rate and the child's memory high-water marks (bytes).</summary>
internal sealed record SeedRun(SentimentResult Result, double LearningRate, long PeakStart, long PeakLoaded, long PeakAfter);

/// <summary>One method's runs, one per seed.</summary>
internal sealed record MethodRuns(string Method, IReadOnlyList<SeedRun> Runs)
{
    /// <summary>The runs' results, in seed order.</summary>
    public IReadOnlyList<SentimentResult> Results => Runs.Select(r => r.Result).ToList();

    /// <summary>The learning rate (the same for every seed).</summary>
    public double LearningRate => Runs[0].LearningRate;

    /// <summary>The highest peak RSS of the runs.</summary>
    public long PeakAfter => Runs.Max(r => r.PeakAfter);

    /// <summary>The largest growth of the peak RSS during training of the runs.</summary>
    public long PeakGrowth => Runs.Max(r => r.PeakAfter - r.PeakLoaded);

    /// <summary>The mean accuracy and its 95% interval over the seeds.</summary>
    public AccuracyInterval Interval => SentimentStatistics.Interval(Results.Select(r => r.Accuracy).ToList());
}

/// <summary>The command line.</summary>
internal sealed record Options(
    IReadOnlyList<SentimentMethod> Methods, SentimentMethod? Child, int Epochs, int BatchSize, double? LearningRate, int Seed, int Seeds,
    string? DocPath, string? SaveDirectory)
{
    public static string Usage =>
        "usage: Sentiment [--method NAME[,NAME...]]... [--all] [--seeds N] [--seed S] [--epochs N] [--batch N] [--lr X] [--save DIR] [--doc PATH]\n" +
        "  methods: " + string.Join(", ", SentimentMethods.All.Select(m => m.Name + (m.Quick ? "*" : string.Empty))) + "   (* = the default set)\n" +
        "  --all: every method; --seeds N: seeds S .. S+N-1 per method (default 1, S = 7), mean and 95% interval in the table";

    /// <summary>The seeds each method runs with.</summary>
    public IReadOnlyList<int> SeedList => Enumerable.Range(Seed, Seeds).ToList();

    /// <summary>The arguments that make a child process run <paramref name="method"/> with <paramref name="seed"/>.</summary>
    public IEnumerable<string> ChildArguments(SentimentMethod method, int seed)
    {
        yield return "--child";
        yield return method.Name;
        foreach (var (flag, value) in new[] { ("--epochs", Epochs), ("--batch", BatchSize), ("--seed", seed) })
        {
            yield return flag;
            yield return value.ToString(CultureInfo.InvariantCulture);
        }
        if (LearningRate is double lr) { yield return "--lr"; yield return lr.ToString("R", CultureInfo.InvariantCulture); }
        if (SaveDirectory is string save)
        {
            // The child saves into its run's own directory.
            yield return "--save";
            yield return Path.GetFullPath(SentimentExperiment.SaveDirectoryOf(save, method, seed, Seeds > 1));
        }
    }

    public static Options? Parse(string[] args, out string? error)
    {
        error = null;
        var methods = new List<SentimentMethod>();
        SentimentMethod? child = null;
        bool all = false;
        int epochs = 1, batch = 32, seed = 7, seeds = 1;
        double? lr = null;
        string? doc = null, save = null;
        for (int i = 0; i < args.Length; i++)
        {
            string? value = i + 1 < args.Length ? args[i + 1] : null;
            switch (args[i])
            {
                case "--method" when value is not null:
                    foreach (var name in value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                    {
                        var method = SentimentMethods.Find(name);
                        if (method is null)
                        {
                            error = $"unknown method '{name}'";
                            return null;
                        }
                        if (!methods.Contains(method)) methods.Add(method);
                    }
                    i++;
                    break;
                case "--child" when value is not null && SentimentMethods.Find(value) is { } c: child = c; i++; break;
                case "--all": all = true; break;
                case "--epochs" when value is not null && int.TryParse(value, CultureInfo.InvariantCulture, out var e) && e > 0: epochs = e; i++; break;
                case "--batch" when value is not null && int.TryParse(value, CultureInfo.InvariantCulture, out var b) && b > 0: batch = b; i++; break;
                case "--seed" when value is not null && int.TryParse(value, CultureInfo.InvariantCulture, out var s): seed = s; i++; break;
                case "--seeds" when value is not null && int.TryParse(value, CultureInfo.InvariantCulture, out var n) && n > 0: seeds = n; i++; break;
                case "--lr" when value is not null && double.TryParse(value, CultureInfo.InvariantCulture, out var l) && l > 0: lr = l; i++; break;
                case "--doc" when value is not null: doc = value; i++; break;
                case "--save" when value is not null: save = value; i++; break;
                default:
                    error = $"unexpected argument '{args[i]}'";
                    return null;
            }
        }

        if (all && methods.Count > 0)
        {
            error = "--all and --method exclude each other";
            return null;
        }

        var chosen = all ? SentimentMethods.All : methods.Count > 0 ? SentimentMethods.All.Where(methods.Contains).ToList() : SentimentMethods.Quick;
        return new Options(chosen, child, epochs, batch, lr, seed, seeds, doc, save);
    }
}
