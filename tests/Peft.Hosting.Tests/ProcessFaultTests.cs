using System.Diagnostics;
using System.Reflection;
using System.Runtime.InteropServices;
using Peft.Training.Checkpoints;

namespace Peft.Hosting.Tests;

/// <summary>Runs samples/HostedTraining as a real child process and kills or terminates it mid-run.</summary>
public sealed class ProcessFaultTests : IDisposable
{
    private const int TotalSteps = 40;
    private readonly string _root = Path.Combine(Path.GetTempPath(), "peft-process-tests-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    private static string SampleDll => typeof(ProcessFaultTests).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
        .Single(a => a.Key == "HostedTrainingDll").Value!;

    private sealed class Child : IDisposable
    {
        private readonly List<string> _lines = new();

        public Child(string output, int stepDelayMs, int totalSteps = TotalSteps)
        {
            var info = new ProcessStartInfo("dotnet")
            {
                WorkingDirectory = Path.GetDirectoryName(SampleDll)!, // appsettings.json and data/ are there
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (var arg in new[]
            {
                SampleDll, $"--PeftTraining:OutputDirectory={output}", $"--PeftTraining:TotalSteps={totalSteps}",
                "--PeftTraining:CheckpointEvery=5", "--PeftTraining:WarmupSteps=3", "--PeftTraining:LogEvery=5",
                $"--Sample:StepDelayMilliseconds={stepDelayMs}",
            })
            {
                info.ArgumentList.Add(arg);
            }

            Process = Process.Start(info)!;
            Process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (_lines) _lines.Add(e.Data); };
            Process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_lines) _lines.Add(e.Data); };
            Process.BeginOutputReadLine();
            Process.BeginErrorReadLine();
        }

        public Process Process { get; }

        public string Output
        {
            get { lock (_lines) return string.Join('\n', _lines); }
        }

        public void WaitForExit(TimeSpan timeout)
        {
            if (!Process.WaitForExit(timeout))
            {
                Process.Kill(entireProcessTree: true);
                throw new TimeoutException("The sample did not exit in time. Output:\n" + Output);
            }

            Process.WaitForExit(); // drains the output
        }

        public void Dispose()
        {
            if (!Process.HasExited) Process.Kill(entireProcessTree: true);
            Process.Dispose();
        }
    }

    private static void WaitForCheckpoint(string output, int atLeastStep, Child child)
    {
        var store = new CheckpointStore(Path.Combine(output, "checkpoints"));
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < TimeSpan.FromSeconds(60))
        {
            if (store.Latest() is { } latest && CheckpointStore.ReadManifest(latest).Step >= atLeastStep) return;
            if (child.Process.HasExited) throw new InvalidOperationException("The sample exited early. Output:\n" + child.Output);
            Thread.Sleep(20);
        }

        throw new TimeoutException("No checkpoint appeared. Output:\n" + child.Output);
    }

    private TrainingRunStatus Uninterrupted(string name)
    {
        string output = Path.Combine(_root, name);
        using var child = new Child(output, stepDelayMs: 0);
        child.WaitForExit(TimeSpan.FromSeconds(90));
        Assert.True(child.Process.ExitCode == 0, child.Output);
        return TrainingRunStatus.Read(output);
    }

    [Fact]
    public void Sigkill_mid_run_then_restart_reaches_the_uninterrupted_final_loss_and_adapter_bit_for_bit()
    {
        var reference = Uninterrupted("reference");
        Assert.Equal(TrainingRunState.Completed, reference.State);

        string output = Path.Combine(_root, "killed");
        using (var child = new Child(output, stepDelayMs: 40))
        {
            WaitForCheckpoint(output, 10, child);
            child.Process.Kill(); // SIGKILL on Unix: no shutdown code runs
            child.WaitForExit(TimeSpan.FromSeconds(30));
        }

        var killed = TrainingRunStatus.Read(output);
        Assert.Equal(TrainingRunState.Running, killed.State);
        int resumedFrom = CheckpointStore.ReadManifest(new CheckpointStore(Path.Combine(output, "checkpoints")).Latest()!).Step;
        Assert.InRange(resumedFrom, 10, TotalSteps - 1);

        using (var restarted = new Child(output, stepDelayMs: 0))
        {
            restarted.WaitForExit(TimeSpan.FromSeconds(90));
            Assert.True(restarted.Process.ExitCode == 0, restarted.Output);
            Assert.Contains($"Resumed from checkpoint {Path.Combine(output, "checkpoints", $"step-{resumedFrom:D8}")} at step {resumedFrom}", restarted.Output, StringComparison.Ordinal);
        }

        var final = TrainingRunStatus.Read(output);
        Assert.Equal(TrainingRunState.Completed, final.State);
        Assert.Equal(BitConverter.DoubleToInt64Bits(reference.LastLoss!.Value), BitConverter.DoubleToInt64Bits(final.LastLoss!.Value));
        Assert.Equal(
            File.ReadAllBytes(Path.Combine(_root, "reference", "adapters", "default", "adapter_model.safetensors")),
            File.ReadAllBytes(Path.Combine(output, "adapters", "default", "adapter_model.safetensors")));
    }

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int SendSignal(int pid, int signal);

    [Fact]
    public void Sigterm_finishes_the_step_writes_a_checkpoint_and_exits_promptly()
    {
        Assert.True(OperatingSystem.IsLinux() || OperatingSystem.IsMacOS(), "SIGTERM needs a Unix system");
        string output = Path.Combine(_root, "terminated");
        using var child = new Child(output, stepDelayMs: 100, totalSteps: 1000);
        WaitForCheckpoint(output, 5, child);

        var clock = Stopwatch.StartNew();
        Assert.Equal(0, SendSignal(child.Process.Id, 15));
        child.WaitForExit(TimeSpan.FromSeconds(30));
        var elapsed = clock.Elapsed;

        Assert.True(elapsed < TimeSpan.FromSeconds(5), $"exit took {elapsed}");
        Assert.True(child.Process.ExitCode == 0, child.Output);
        var status = TrainingRunStatus.Read(output);
        Assert.Equal(TrainingRunState.Stopped, status.State);
        Assert.InRange(status.Step, 5, 999);
        Assert.Equal(status.Step, CheckpointStore.ReadManifest(status.Checkpoint!).Step);
        Assert.Contains($"Stop requested: finished step {status.Step} and wrote checkpoint", child.Output, StringComparison.Ordinal);
    }
}
