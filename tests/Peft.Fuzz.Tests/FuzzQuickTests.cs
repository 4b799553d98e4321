using System.Diagnostics;
using System.Text.Json;
using Peft.Fuzz;

namespace Peft.Fuzz.Tests;

/// <summary>
/// The fuzz suite's quick mode (docs/reliability.md): a fixed seed, 40 cases per file kind, every kind in child
/// worker processes. Any crash, hang, undocumented exception type, message without the file, changed model after a
/// failed load, invalid successful load or allocation over 1 GiB fails the test, with the repro commands in the message.
/// </summary>
public sealed class FuzzQuickTests
{
    public const int QuickCasesPerKind = 40;

    [Fact]
    public async Task Quick_mode_finds_no_failure_in_any_file_kind()
    {
        var report = Path.Combine(Path.GetTempPath(), $"peft-fuzz-quick-{Guid.NewGuid():N}.json");
        var (dotnet, tool) = Tool();
        var start = new ProcessStartInfo(dotnet)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in new[] { tool, "run", "--cases", QuickCasesPerKind.ToString(System.Globalization.CultureInfo.InvariantCulture), "--report", report })
            start.ArgumentList.Add(argument);
        var watch = Stopwatch.StartNew();
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        string output = await process.StandardOutput.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        await process.WaitForExitAsync(timeout.Token);
        try
        {
            Assert.True(process.ExitCode == 0, $"fuzz run failed (exit {process.ExitCode}):\n{output}\n{await stderr}");
            using var json = JsonDocument.Parse(File.ReadAllText(report));
            int cases = json.RootElement.GetProperty("Cases").GetInt32();
            Assert.Equal(QuickCasesPerKind * FileKinds.All.Count, cases);
            Assert.Equal(0, json.RootElement.GetProperty("Failures").GetInt32());
            foreach (var kind in json.RootElement.GetProperty("Kinds").EnumerateArray())
            {
                Assert.True(kind.GetProperty("MaxManagedBytes").GetInt64() < Worker.OneGiB);
                Assert.True(kind.GetProperty("MaxNativePeakBytes").GetInt64() < Worker.OneGiB);
            }
            // About 14 s alone and 35 s beside the other test projects on 2 cores; the bound only catches a runaway.
            Assert.True(watch.Elapsed < TimeSpan.FromMinutes(2), $"quick mode took {watch.Elapsed}");
        }
        finally
        {
            foreach (var file in new[] { report, Path.ChangeExtension(report, ".md"), Path.ChangeExtension(report, ".cases.jsonl") })
                File.Delete(file);
        }
    }

    /// <summary>The dotnet host and the fuzzer's dll as built next to this test assembly.</summary>
    internal static (string Dotnet, string Tool) Tool()
    {
        var tool = Path.Combine(AppContext.BaseDirectory, "Peft.Fuzz.dll");
        Assert.True(File.Exists(tool), $"{tool} is missing");
        Assert.True(File.Exists(Path.ChangeExtension(tool, ".runtimeconfig.json")), "the fuzzer's runtimeconfig.json was not copied next to the tests");
        var host = Environment.ProcessPath!;
        if (Path.GetFileNameWithoutExtension(host) != "dotnet")
        {
            host = Path.Combine(Path.GetDirectoryName(typeof(object).Assembly.Location)!, "..", "..", "..", "dotnet");
        }
        return (host, tool);
    }
}
