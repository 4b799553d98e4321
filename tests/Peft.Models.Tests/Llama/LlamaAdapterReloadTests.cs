using System.Diagnostics;
using System.Runtime.InteropServices;
using Peft.Checkpoints;
using Peft.Models.Llama;
using Peft.Serialization;
using Peft.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Models.Tests.Llama;

/// <summary>
/// Trains LoRA on PEFT's default Llama targets (q_proj, v_proj) of a tiny Llama-layout checkpoint, saves base and adapter, then reloads both in a fresh
/// process (this test assembly run again by <c>dotnet test</c>, filtered to <see cref="LlamaReloadChild"/>) and
/// compares the logits bit for bit.
/// </summary>
public sealed class LlamaAdapterReloadTests : IDisposable
{
    private readonly string _root = TinyLlama.TempDir("reload");

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    [Fact]
    public void TrainedAdapterReloadedInAFreshProcessGivesIdenticalLogits()
    {
        string baseDir = Path.Combine(_root, "base");
        string adapterDir = Path.Combine(_root, "adapter");
        string idsFile = Path.Combine(_root, "ids.bin");
        string logitsFile = Path.Combine(_root, "child-logits.bin");

        using var model = TinyLlama.CreateWithLoRA(20);
        HfCheckpoint.Save(model, baseDir, model.Config.ToHf());
        var ids = TinyLlama.RandomIds(21, 2, 10);
        Tensor baseLogits;
        using (no_grad()) baseLogits = model.call(ids);

        // A few AdamW steps of next-token loss on a fixed batch: only lora_A/lora_B of q_proj and v_proj move.
        var frozenBefore = model.state_dict()["model.layers.0.self_attn.k_proj.weight"].clone();
        var trainIds = TinyLlama.RandomIds(22, 4, 16);
        model.train();
        var losses = new List<double>();
        using (var trainer = new AdapterTrainer(model.TrainableParameters(), new TrainingOptions { LearningRate = 1e-2, TotalSteps = 8 }))
        {
            for (int step = 0; step < 8; step++)
            {
                var progress = trainer.TrainStep(() =>
                {
                    var logits = model.call(trainIds[.., ..^1]);
                    return nn.functional.cross_entropy(logits.reshape(-1, 64), trainIds[.., 1..].reshape(-1));
                });
                losses.Add(progress.Loss);
            }
        }

        model.eval();
        Assert.True(losses[^1] < losses[0], $"loss did not decrease: {string.Join(", ", losses)}");
        Assert.True(TinyLlama.BitwiseEqual(frozenBefore, model.state_dict()["model.layers.0.self_attn.k_proj.weight"]), "a frozen base weight changed");

        AdapterFiles.Save(model, adapterDir);
        Tensor trainedLogits;
        using (no_grad()) trainedLogits = model.call(ids);
        Assert.False(trainedLogits.allclose(baseLogits), "training did not change the logits");

        File.WriteAllBytes(idsFile, MemoryMarshal.AsBytes(ids.contiguous().data<long>().ToArray().AsSpan()).ToArray());
        string output = RunChild(baseDir, adapterDir, idsFile, logitsFile);
        Assert.True(File.Exists(logitsFile), "the child process wrote no logits:\n" + output);

        var childLogits = MemoryMarshal.Cast<byte, float>(File.ReadAllBytes(logitsFile)).ToArray();
        var expected = trainedLogits.contiguous().flatten().data<float>().ToArray();
        Assert.Equal(expected.Length, childLogits.Length);
        int differing = expected.Zip(childLogits).Count(p => BitConverter.SingleToInt32Bits(p.First) != BitConverter.SingleToInt32Bits(p.Second));
        Assert.True(differing == 0, $"{differing} of {expected.Length} logits differ between the trained model and the fresh process");
    }

    private static string RunChild(string baseDir, string adapterDir, string idsFile, string logitsFile)
    {
        var info = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add("test");
        info.ArgumentList.Add(typeof(LlamaReloadChild).Assembly.Location);
        info.ArgumentList.Add("--filter");
        info.ArgumentList.Add($"FullyQualifiedName={typeof(LlamaReloadChild).FullName}.{nameof(LlamaReloadChild.LoadBaseAndAdapterAndWriteLogits)}");
        info.Environment[LlamaReloadChild.Variable] = string.Join('\n', baseDir, adapterDir, idsFile, logitsFile);
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(2)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException("The child dotnet test process did not finish in 2 minutes.");
        }

        string output = stdout.Result + stderr.Result;
        Assert.True(process.ExitCode == 0, $"child exited with {process.ExitCode}:\n{output}");
        return output;
    }
}

/// <summary>Runs only when <see cref="LlamaReloadChild.Variable"/> is set, i.e. as the child of the reload test.</summary>
public sealed class ChildProcessFactAttribute : FactAttribute
{
    public ChildProcessFactAttribute()
    {
        if (Environment.GetEnvironmentVariable(LlamaReloadChild.Variable) is null)
        {
            Skip = "Runs as the child process of LlamaAdapterReloadTests.";
        }
    }
}

/// <summary>The fresh-process half of <see cref="LlamaAdapterReloadTests"/>.</summary>
public sealed class LlamaReloadChild
{
    public const string Variable = "PEFT_LLAMA_RELOAD_CHILD";

    [ChildProcessFact]
    public void LoadBaseAndAdapterAndWriteLogits()
    {
        var parts = Environment.GetEnvironmentVariable(Variable)!.Split('\n');
        string baseDir = parts[0], adapterDir = parts[1], idsFile = parts[2], logitsFile = parts[3];

        // A different seed than the parent: every loaded value must come from the files. The stock model declares no
        // adapter: the file's target_modules (q_proj, v_proj) create it.
        manual_seed(12345);
        using var model = LlamaForCausalLM.FromPretrained(baseDir);
        var result = AdapterFiles.Load(model, adapterDir);
        Assert.Equal(8, result.LoadedTensors);
        Assert.NotNull(result);
        model.eval();

        var idValues = MemoryMarshal.Cast<byte, long>(File.ReadAllBytes(idsFile)).ToArray();
        using var ids = tensor(idValues, dtype: ScalarType.Int64).view(2, -1);
        using var _ = no_grad();
        using var logits = model.call(ids);
        var values = logits.contiguous().flatten().data<float>().ToArray();
        File.WriteAllBytes(logitsFile, MemoryMarshal.AsBytes(values.AsSpan()).ToArray());
    }
}
