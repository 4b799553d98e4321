using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;

namespace Peft.Fuzz;

/// <summary>Settings of a fuzz run.</summary>
public sealed record RunOptions
{
    public int CasesPerKind { get; init; } = 30;
    public int Seed { get; init; } = 20250101;
    public IReadOnlyList<string>? Kinds { get; init; }
    public TimeSpan CaseTimeout { get; init; } = TimeSpan.FromSeconds(30);
    public int Parallel { get; init; } = Math.Max(1, Environment.ProcessorCount);
    public string Work { get; init; } = Path.Combine(Path.GetTempPath(), "peft-fuzz-" + Guid.NewGuid().ToString("N")[..8]);
    public bool KeepWork { get; init; }

    /// <summary>Virtual-memory limit of each worker (ulimit -v), so a loader that tries to allocate 128 GB fails
    /// inside the worker (and is recorded) instead of exhausting the machine.</summary>
    public long WorkerAddressSpaceKiB { get; init; } = 8L << 20;
}

/// <summary>
/// Runs each file kind's cases in child worker processes, at most <see cref="RunOptions.Parallel"/> at once. A worker
/// that dies (SIGABRT from native code, an OOM kill) is recorded as a crash of the case it was running, and a case that
/// runs past the timeout as a hang (the worker is killed); either way a new worker continues with the next case.
/// </summary>
public static class Orchestrator
{
    public static RunReport Run(RunOptions options, TextWriter log)
    {
        var kinds = FileKinds.All.Where(k => options.Kinds is null || options.Kinds.Contains(k.Name)).ToList();
        var unknown = options.Kinds?.Except(FileKinds.All.Select(k => k.Name)).ToList() ?? [];
        if (unknown.Count > 0) throw new ArgumentException($"Unknown file kind(s): {string.Join(", ", unknown)} (known: {string.Join(", ", FileKinds.All.Select(k => k.Name))})");

        Directory.CreateDirectory(options.Work);
        var results = new ConcurrentBag<CaseResult>();
        var watch = Stopwatch.StartNew();
        Parallel.ForEach(kinds, new ParallelOptions { MaxDegreeOfParallelism = options.Parallel }, kind =>
        {
            var kindWatch = Stopwatch.StartNew();
            foreach (var result in RunKind(kind, options, log)) results.Add(result);
            lock (log) log.WriteLine($"  {kind.Name}: {options.CasesPerKind} cases in {kindWatch.Elapsed.TotalSeconds:0.0} s");
        });
        watch.Stop();
        if (!options.KeepWork)
        {
            try
            {
                Mutator.Delete(options.Work);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
            }
        }
        return new RunReport(options, kinds, results.OrderBy(r => r.Kind, StringComparer.Ordinal).ThenBy(r => r.Index).ToList(), watch.Elapsed);
    }

    private static List<CaseResult> RunKind(FileKind kind, RunOptions options, TextWriter log)
    {
        var results = new List<CaseResult>();
        int next = 0;
        int launches = 0;
        while (next < options.CasesPerKind)
        {
            if (++launches > options.CasesPerKind + 3)
            {
                throw new InvalidOperationException($"{kind.Name}: workers keep failing before running a case; see the output above.");
            }
            var (done, failedCase, failure) = RunWorker(kind, options, next, results);
            if (failedCase is int index)
            {
                results.Add(new CaseResult(kind.Name, index, failure!.Value.Outcome, "(see the worker's stderr)", "", null, failure.Value.Detail, 0, 0, 0, failure.Value.Detail));
                lock (log) log.WriteLine($"  {kind.Name} case {index}: {failure.Value.Outcome}: {Trim(failure.Value.Detail, 300)}");
                next = index + 1;
            }
            else if (done >= options.CasesPerKind)
            {
                next = done;
            }
            else if (done == next)
            {
                throw new InvalidOperationException($"{kind.Name}: the worker exited before its first case: {Trim(failure?.Detail ?? "", 2000)}");
            }
            else
            {
                next = done;
            }
        }
        return results;
    }

    /// <summary>Runs one worker from case <paramref name="from"/>; returns the next case to run and the case that crashed or hung, if one did.</summary>
    private static (int Next, int? FailedCase, (string Outcome, string Detail)? Failure) RunWorker(FileKind kind, RunOptions options, int from, List<CaseResult> results)
    {
        var host = Environment.ProcessPath!;
        var self = typeof(Orchestrator).Assembly.Location;
        var arguments = new List<string>();
        if (Path.GetFileNameWithoutExtension(host) == "dotnet") arguments.Add(self);
        arguments.AddRange(["worker", "--kind", kind.Name, "--seed", options.Seed.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--from", from.ToString(System.Globalization.CultureInfo.InvariantCulture), "--to", options.CasesPerKind.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--work", options.Work]);

        var start = new ProcessStartInfo
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (OperatingSystem.IsLinux())
        {
            start.FileName = "/bin/sh";
            start.ArgumentList.Add("-c");
            start.ArgumentList.Add($"ulimit -v {options.WorkerAddressSpaceKiB} 2>/dev/null; exec \"$@\"");
            start.ArgumentList.Add("sh");
            start.ArgumentList.Add(host);
        }
        else
        {
            start.FileName = host;
        }
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        // Managed allocations beyond this fail in the worker (and are reported) rather than growing without bound.
        start.Environment["DOTNET_GCHeapHardLimit"] = "0x60000000";

        using var process = Process.Start(start) ?? throw new InvalidOperationException("cannot start a worker");
        var stderr = new System.Text.StringBuilder();
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (stderr)
            {
                if (stderr.Length < 20000) stderr.AppendLine(e.Data);
            }
        };
        process.BeginErrorReadLine();

        int? running = null;
        int next = from;
        var lines = new BlockingCollection<string?>();
        var reader = Task.Run(() =>
        {
            string? line;
            while ((line = process.StandardOutput.ReadLine()) is not null) lines.Add(line);
            lines.Add(null);
        });
        var caseWatch = Stopwatch.StartNew();
        // The first case also builds the seed: give it more time.
        var timeout = options.CaseTimeout + TimeSpan.FromSeconds(60);
        while (true)
        {
            var left = timeout - caseWatch.Elapsed;
            if (left < TimeSpan.Zero) left = TimeSpan.Zero;
            if (!lines.TryTake(out var line, left))
            {
                process.Kill(entireProcessTree: true);
                process.WaitForExit();
                if (running is int hung) return (hung + 1, hung, ("FAIL:hang", $"no result after {options.CaseTimeout.TotalSeconds:0} s; worker killed"));
                return (next, null, ("FAIL:hang", "the worker did not start a case"));
            }
            if (line is null) break;
            if (line.StartsWith("@@START ", StringComparison.Ordinal))
            {
                running = int.Parse(line.AsSpan(8), System.Globalization.CultureInfo.InvariantCulture);
                caseWatch.Restart();
                timeout = options.CaseTimeout;
            }
            else if (line.StartsWith("@@DONE ", StringComparison.Ordinal))
            {
                int space = line.IndexOf(' ', 7);
                var result = JsonSerializer.Deserialize<CaseResult>(line.AsSpan(space + 1))!;
                results.Add(result);
                running = null;
                next = result.Index + 1;
            }
        }
        process.WaitForExit();
        reader.Wait();
        string tail;
        lock (stderr) tail = stderr.ToString();
        if (running is int crashed)
        {
            int code = process.ExitCode;
            string signal = code > 128 ? $" (signal {code - 128}{(code == 134 ? ", SIGABRT" : code == 137 ? ", SIGKILL" : code == 139 ? ", SIGSEGV" : "")})" : "";
            return (crashed + 1, crashed, ("FAIL:crash", $"worker exited with {code}{signal} during the case. stderr: {Trim(tail, 1500)}"));
        }
        return (next, null, process.ExitCode == 0 ? null : ("FAIL:harness", $"worker exit {process.ExitCode}: {Trim(tail, 3000)}"));
    }

    private static string Trim(string text, int max) => text.Length <= max ? text : text[..max] + "...";
}
