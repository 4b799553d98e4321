using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Peft.Serialization;

namespace Peft.Fuzz;

/// <summary>The result of one case, as a worker reports it.</summary>
public sealed record CaseResult(
    string Kind, int Index, string Outcome, string Mutation, string Call, string? ExceptionType, string? Message,
    long ManagedBytes, long NativePeakBytes, double Milliseconds, string? Failure);

/// <summary>
/// Runs cases of one file kind in this process, one after the other, and reports each on stdout:
/// <c>@@START i</c> before the load and <c>@@DONE i {json}</c> after, so the parent sees which case was running
/// when the process died (a native abort) or stopped answering (a hang).
/// </summary>
public static class Worker
{
    public const long OneGiB = 1L << 30;

    /// <summary>Results travel as one JSON line each; ASCII-only escaping keeps odd characters in messages intact.</summary>
    public static readonly JsonSerializerOptions Json = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static int Run(FileKind kind, int seed, int from, int to, string work, bool keep)
    {
        var seedArtifact = BuildSeed(kind, work);
        var casesRoot = Path.Combine(work, "cases", kind.Name);
        Directory.CreateDirectory(casesRoot);
        var stdout = Console.Out;
        for (int i = from; i < to; i++)
        {
            stdout.WriteLine($"@@START {i}");
            stdout.Flush();
            var result = RunCase(kind, seed, i, seedArtifact, casesRoot, keep);
            stdout.WriteLine("@@DONE " + i + " " + JsonSerializer.Serialize(result, Json));
            stdout.Flush();
        }
        return 0;
    }

    /// <summary>The case's own random source: depends only on the run seed, the kind and the case number.</summary>
    public static Random CaseRandom(int seed, string kind, int index)
    {
        ulong hash = 14695981039346656037UL;
        foreach (byte b in Encoding.UTF8.GetBytes($"{seed}:{kind}:{index}"))
        {
            hash = (hash ^ b) * 1099511628211UL;
        }
        return new Random((int)(hash ^ (hash >> 32)));
    }

    private static string BuildSeed(FileKind kind, string work)
    {
        var root = Path.Combine(work, "seeds", kind.Name);
        var marker = Path.Combine(root, ".complete");
        if (File.Exists(marker)) return File.ReadAllText(marker);
        if (Directory.Exists(root)) Mutator.Delete(root);
        Directory.CreateDirectory(root);
        var artifact = Path.GetFullPath(kind.BuildSeed(root));
        File.WriteAllText(marker, artifact);
        return artifact;
    }

    private static CaseResult RunCase(FileKind kind, int seed, int index, string seedArtifact, string casesRoot, bool keep)
    {
        var random = CaseRandom(seed, kind.Name, index);
        var caseDir = Path.Combine(casesRoot, index.ToString(System.Globalization.CultureInfo.InvariantCulture));
        if (Directory.Exists(caseDir) || File.Exists(caseDir)) Mutator.Delete(caseDir);
        Directory.CreateDirectory(caseDir);
        var artifact = Path.Combine(caseDir, Path.GetFileName(seedArtifact));
        Copy(seedArtifact, artifact);

        var mutator = new Mutator(random);
        string mutation;
        try
        {
            mutator.Mutate(artifact, caseDir);
            kind.Repair?.Invoke(artifact, mutator.Touched, random);
            mutation = string.Join("; ", mutator.Log);
        }
        catch (Exception e)
        {
            // The harness itself failed: report it as a failure so it is seen, not as a loader problem.
            return new CaseResult(kind.Name, index, "FAIL:harness", string.Join("; ", mutator.Log), "", e.GetType().Name, e.ToString(), 0, 0, 0, "the mutation threw");
        }

        using var load = kind.Prepare(artifact, random);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        long managedBefore = GC.GetTotalAllocatedBytes(precise: true);
        long rssBefore = Memory.ResetPeakAndReadRss();
        var watch = Stopwatch.StartNew();
        string outcome;
        string? failure = null, type = null, message = null;
        try
        {
            load.Load();
            outcome = "loaded";
            if (load.Loaded?.Invoke() is { } invalid)
            {
                outcome = "FAIL:invalid-load";
                failure = invalid;
            }
        }
        catch (Exception e)
        {
            type = e.GetType().FullName;
            message = e.Message.Length > 600 ? e.Message[..600] + "..." : e.Message;
            bool documented = e is PeftFileException or FileNotFoundException or DirectoryNotFoundException;
            if (!documented)
            {
                outcome = "FAIL:undocumented";
                failure = $"{e.GetType().Name} is not a documented exception: {e}";
            }
            else if (!e.Message.Contains(caseDir, StringComparison.Ordinal))
            {
                outcome = "FAIL:unnamed";
                failure = "the message does not name the file";
            }
            else
            {
                outcome = "refused:" + e.GetType().Name;
            }

            if (load.Unchanged?.Invoke() is { } changed)
            {
                outcome = "FAIL:changed";
                failure = $"the failed load changed the target: {changed}";
            }
        }
        watch.Stop();
        long managed = GC.GetTotalAllocatedBytes(precise: true) - managedBefore;
        long native = Math.Max(0, Memory.PeakRss() - rssBefore);
        if (managed > OneGiB || native > OneGiB)
        {
            outcome = "FAIL:alloc";
            failure = $"allocated {managed} managed bytes, native peak +{native} bytes (limit 1 GiB)";
        }

        if (!keep) Mutator.Delete(caseDir);
        return new CaseResult(kind.Name, index, outcome, mutation, load.Call, type, message, managed, native, watch.Elapsed.TotalMilliseconds, failure);
    }

    private static void Copy(string source, string destination)
    {
        if (File.Exists(source))
        {
            File.Copy(source, destination);
            return;
        }
        Directory.CreateDirectory(destination);
        foreach (var file in Directory.GetFiles(source)) File.Copy(file, Path.Combine(destination, Path.GetFileName(file)));
        foreach (var dir in Directory.GetDirectories(source)) Copy(dir, Path.Combine(destination, Path.GetFileName(dir)));
    }
}

/// <summary>Resident memory of this process from /proc (Linux); elsewhere 0, so only managed allocations are measured.</summary>
public static class Memory
{
    /// <summary>Resets the kernel's peak-RSS counter (VmHWM) and returns the current RSS in bytes.</summary>
    public static long ResetPeakAndReadRss()
    {
        if (!OperatingSystem.IsLinux()) return 0;
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Without the reset VmHWM is the process's peak so far: still an upper bound.
        }
        return Read("VmRSS:");
    }

    /// <summary>The peak RSS since the last reset, in bytes.</summary>
    public static long PeakRss() => OperatingSystem.IsLinux() ? Read("VmHWM:") : 0;

    private static long Read(string key)
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith(key, StringComparison.Ordinal))
            {
                var parts = line[key.Length..].Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries);
                return long.Parse(parts[0], System.Globalization.CultureInfo.InvariantCulture) * 1024;
            }
        }
        return 0;
    }
}
