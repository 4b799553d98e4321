using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Peft.Fuzz;

/// <summary>The results of a run, summarised per file kind and outcome class.</summary>
public sealed record RunReport(RunOptions Options, IReadOnlyList<FileKind> Kinds, IReadOnlyList<CaseResult> Results, TimeSpan Elapsed)
{
    public IReadOnlyList<CaseResult> Failures => Results.Where(r => r.Outcome.StartsWith("FAIL:", StringComparison.Ordinal)).ToList();

    /// <summary>A Markdown summary: one row per file kind, outcome classes as columns, then every failure with its repro command.</summary>
    public string ToMarkdown()
    {
        var text = new StringBuilder();
        var classes = Results.Select(r => r.Outcome).Distinct().OrderBy(c => c.StartsWith("FAIL", StringComparison.Ordinal)).ThenBy(c => c, StringComparer.Ordinal).ToList();
        text.AppendLine(CultureInfo.InvariantCulture, $"{Results.Count} cases, seed {Options.Seed}, {Options.CasesPerKind} per kind, {Elapsed.TotalSeconds:0} s; failures: {Failures.Count}");
        text.AppendLine();
        text.Append("| file kind | cases | ").AppendJoin(" | ", classes).AppendLine(" | max managed alloc | max native peak |");
        text.Append("| --- | ---: | ").AppendJoin(" | ", classes.Select(_ => "---:")).AppendLine(" | ---: | ---: |");
        foreach (var kind in Kinds)
        {
            var rows = Results.Where(r => r.Kind == kind.Name).ToList();
            text.Append(CultureInfo.InvariantCulture, $"| {kind.Name} | {rows.Count} | ");
            text.AppendJoin(" | ", classes.Select(c => rows.Count(r => r.Outcome == c).ToString(CultureInfo.InvariantCulture)));
            text.AppendLine(CultureInfo.InvariantCulture, $" | {Mib(rows.Select(r => r.ManagedBytes).DefaultIfEmpty(0).Max())} | {Mib(rows.Select(r => r.NativePeakBytes).DefaultIfEmpty(0).Max())} |");
        }
        var all = Results;
        text.Append(CultureInfo.InvariantCulture, $"| **all** | {all.Count} | ");
        text.AppendJoin(" | ", classes.Select(c => all.Count(r => r.Outcome == c).ToString(CultureInfo.InvariantCulture)));
        text.AppendLine(CultureInfo.InvariantCulture, $" | {Mib(all.Select(r => r.ManagedBytes).DefaultIfEmpty(0).Max())} | {Mib(all.Select(r => r.NativePeakBytes).DefaultIfEmpty(0).Max())} |");

        if (Failures.Count > 0)
        {
            text.AppendLine();
            text.AppendLine("Failures (reproduce one with the command shown; --keep leaves the mutated files in --work):");
            foreach (var f in Failures.Take(200))
            {
                text.AppendLine(CultureInfo.InvariantCulture, $"- {f.Kind} #{f.Index} {f.Outcome}: {f.Mutation} -> {f.Call}: {f.ExceptionType} {Short(f.Failure ?? f.Message)}");
                text.AppendLine(CultureInfo.InvariantCulture, $"  `dotnet tools/Peft.Fuzz/bin/Release/net10.0/Peft.Fuzz.dll worker --kind {f.Kind} --seed {Options.Seed} --from {f.Index} --to {f.Index + 1} --work /tmp/peft-fuzz-repro --keep`");
            }
        }
        return text.ToString();
    }

    /// <summary>Every case, one JSON object per line.</summary>
    public IEnumerable<string> CaseLines() => Results.Select(r => JsonSerializer.Serialize(r, Worker.Json));

    public string ToJson() => JsonSerializer.Serialize(new
    {
        Options.Seed,
        Options.CasesPerKind,
        ElapsedSeconds = Elapsed.TotalSeconds,
        Cases = Results.Count,
        Failures = Failures.Count,
        Kinds = Kinds.Select(k => new
        {
            k.Name,
            k.Description,
            Cases = Results.Count(r => r.Kind == k.Name),
            Outcomes = Results.Where(r => r.Kind == k.Name).GroupBy(r => r.Outcome).ToDictionary(g => g.Key, g => g.Count()),
            MaxManagedBytes = Results.Where(r => r.Kind == k.Name).Select(r => r.ManagedBytes).DefaultIfEmpty(0).Max(),
            MaxNativePeakBytes = Results.Where(r => r.Kind == k.Name).Select(r => r.NativePeakBytes).DefaultIfEmpty(0).Max(),
        }),
        FailureCases = Failures,
    }, new JsonSerializerOptions { WriteIndented = true });

    private static string Mib(long bytes) => (bytes / (1024.0 * 1024.0)).ToString("0.0", CultureInfo.InvariantCulture) + " MiB";

    private static string Short(string? text) => text is null ? "" : (text.Length > 400 ? text[..400] + "..." : text).ReplaceLineEndings(" ");
}
