using System.Text.Json.Nodes;
using Peft.Runtime.Tests.Core;
using Peft.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.LNTuning;

/// <summary>LayerNorm tuning against its formula (Zhao et al., 2023; PEFT's ln_tuning/layer.py) with hand-computed examples.</summary>
public class LNTuningTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "peft-lntuning-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    private static LNTuningAdapter Adapter(AdaptedNorm norm, string name = "default") => (LNTuningAdapter)norm.GetAdapter(name);

    private static void Set(Tensor target, params float[] values)
    {
        using var noGrad = no_grad();
        target.copy_(tensor(values));
    }

    [Fact]
    public void TheNormRunsWithTheTrainedCopy_HandComputed()
    {
        // x = [1, 2, 3]: mean 2, biased variance 2/3, (x - 2) / sqrt(2/3 + 1e-5) = [-1.2247357, 0, 1.2247357].
        // Copy weight [2, 1, 0.5], bias [0, 1, -1]: y = [-2.4494714, 1, -0.3876322].
        using var model = new DeclaredNormModel();
        var adapter = Adapter(model.Norm);
        Set(adapter.Weight, 2, 1, 0.5f);
        Set(adapter.Bias!, 0, 1, -1);
        using var y = model.Norm.call(tensor(new float[] { 1, 2, 3 }, new long[] { 1, 3 }));
        TensorAssert.Close(tensor(new float[] { -2.4494714f, 1, -0.3876322f }, new long[] { 1, 3 }), y, 1e-5);

        // The base norm (weight 1, bias 0) is untouched and runs when adapters are disabled.
        using (model.DisableAdapters())
        {
            using var plain = model.Norm.call(tensor(new float[] { 1, 2, 3 }, new long[] { 1, 3 }));
            TensorAssert.Close(tensor(new float[] { -1.2247357f, 0, 1.2247357f }, new long[] { 1, 3 }), plain, 1e-5);
        }
    }

    [Fact]
    public void TheCopyStartsAsTheBaseNorm_SoTheModelStartsUnchanged()
    {
        using var x = randn(5, 4, generator: new Generator(3));
        using var plain = new TargetNormModel();
        using var expected = plain.call(x);
        using var model = new TargetNormModel();
        model.ApplyTargets(new PeftTargets(TargetModules.Names("ln", "ln_nobias", "rms"), new LNTuningOptions()));
        using var actual = model.call(x);
        TensorAssert.Equal(expected, actual);
        Assert.Equal(3, model.AdaptedLayers().Count(l => l.Layer.HasAdapter("default")));
    }

    [Fact]
    public void OnlyTheCopiesTrain_AndTheirGradientIsTheNormalisedInput()
    {
        using var model = new DeclaredNormModel();
        Assert.Equal(new long[] { 3, 3 }, model.TrainableParameters().Select(p => p.numel()).ToArray());
        using var x = tensor(new float[] { 1, 2, 3 }, new long[] { 1, 3 });
        using var loss = model.Norm.call(x).sum();
        loss.backward();
        // d/dw Σ(x̂ ⊙ w + b) = x̂, d/db = 1.
        var adapter = Adapter(model.Norm);
        TensorAssert.Close(tensor(new float[] { -1.2247357f, 0, 1.2247357f }), adapter.Weight.grad!, 1e-5);
        TensorAssert.Close(tensor(new float[] { 1, 1, 1 }), adapter.Bias!.grad!, 1e-6);
        Assert.Null(model.Norm.Weight.grad);
        Assert.Null(model.Norm.Bias!.grad);
    }

    [Fact]
    public void MergeWritesTheCopyIntoTheNorm_AndUnmergeRestoresItBitForBit()
    {
        using var model = new DeclaredNormModel();
        var adapter = Adapter(model.Norm);
        Set(model.Norm.Weight, 1.5f, 0.5f, 2);
        Set(model.Norm.Bias!, 0.1f, 0.2f, 0.3f);
        Set(adapter.Weight, 2, 1, 0.5f);
        Set(adapter.Bias!, 0, 1, -1);
        using var x = randn(4, 3, generator: new Generator(5));
        using var unmerged = model.call(x);

        model.Merge();
        TensorAssert.Equal(tensor(new float[] { 2, 1, 0.5f }), model.Norm.Weight);
        TensorAssert.Equal(tensor(new float[] { 0, 1, -1 }), model.Norm.Bias!);
        using (var merged = model.call(x)) TensorAssert.Equal(unmerged, merged);

        model.Unmerge();
        TensorAssert.Equal(tensor(new float[] { 1.5f, 0.5f, 2 }), model.Norm.Weight);
        TensorAssert.Equal(tensor(new float[] { 0.1f, 0.2f, 0.3f }), model.Norm.Bias!);
        TensorAssert.Equal(tensor(new float[] { 2, 1, 0.5f }), adapter.Weight); // the copy keeps its trained values
    }

    [Fact]
    public void UnmergeWithoutAMerge_IsRefusedWithTheReason()
    {
        using var model = new DeclaredNormModel();
        var adapter = Adapter(model.Norm);
        var ex = Assert.Throws<InvalidOperationException>(() => adapter.UnmergeFrom(new LayerParameters(model.Norm.Weight, model.Norm.Bias)));
        Assert.Contains("not merged", ex.Message);
    }

    [Fact]
    public void TwoActiveCopiesOnOneNorm_AreRefused_AsInPeft()
    {
        using var model = new DeclaredNormModel();
        model.Norm.WithAdapter("second", new LNTuningOptions());
        var ex = Assert.Throws<PeftConfigurationException>(() => model.Norm.SetActiveAdapters("default", "second"));
        Assert.Contains("only one adapter", ex.Message);
        Assert.Contains("norm", ex.Message);

        // Switching between them works: each copy starts as the base and trains on its own.
        model.Norm.SetActiveAdapter("second");
        Assert.Equal(new[] { "second" }, model.Norm.ActiveAdapters);
    }

    [Fact]
    public void ALinearLayer_IsNotANorm()
    {
        var layer = AdaptedLinear.Wrap(nn.Linear(3, 3), "q_proj");
        var ex = Assert.Throws<PeftConfigurationException>(() => layer.WithAdapter("default", new LNTuningOptions()));
        Assert.Contains("q_proj", ex.Message);
        Assert.Contains("Norm", ex.Message);
    }

    [Fact]
    public void ANormWithoutBias_HasOnlyAWeightCopy_AndTheCustomRmsNormIsTuned()
    {
        using var model = new TargetNormModel();
        model.ApplyTargets(new PeftTargets(TargetModules.Names("ln_nobias", "rms"), new LNTuningOptions()));
        Assert.Equal(new long[] { 4, 4 }, model.TrainableParameters().Select(p => p.numel()).ToArray());

        // RMSNorm: x = [1, 1, 1, 1] has rms 1, so y = x / sqrt(1 + 1e-6) ⊙ w ≈ w.
        var rms = model.AdaptedLayers().Single(l => l.Path == "rms").Layer;
        var copy = (LNTuningAdapter)rms.GetAdapter("default");
        Set(copy.Weight, 1, 2, 3, 4);
        using var y = rms.call(ones(1, 4));
        TensorAssert.Close(tensor(new float[] { 1, 2, 3, 4 }, new long[] { 1, 4 }), y, 1e-5);
    }

    [Fact]
    public void SaveWritesPeftsKeysAndConfig_AndLoadRestoresTheOutputs()
    {
        using var x = randn(5, 4, generator: new Generator(3));
        Tensor expected;
        using (var source = new TargetNormModel())
        {
            source.ApplyTargets(new PeftTargets(TargetModules.Names("ln", "ln_nobias"), new LNTuningOptions()));
            using (no_grad())
            {
                foreach (var p in source.AdapterParameters()) p.add_(randn(p.shape, generator: new Generator(11)) * 0.2);
            }
            expected = source.call(x);
            AdapterFiles.Save(source, _dir);
        }

        using (var file = SafetensorsFile.Open(Path.Combine(_dir, AdapterFiles.WeightsFileName)))
        {
            Assert.Equal(
                new[] { "base_model.model.ln.ln_tuning_layers.bias", "base_model.model.ln.ln_tuning_layers.weight", "base_model.model.ln_nobias.ln_tuning_layers.weight" },
                file.Tensors.Select(t => t.Name).OrderBy(n => n, StringComparer.Ordinal));
        }

        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(_dir, AdapterFiles.ConfigFileName)))!.AsObject();
        Assert.Equal("LN_TUNING", (string?)config["peft_type"]);
        Assert.Equal(new[] { "ln", "ln_nobias" }, config["target_modules"]!.AsArray().Select(n => (string?)n));

        using var model = new TargetNormModel();
        model.LoadAdapterWithTargets(_dir);
        using var actual = model.call(x);
        TensorAssert.Equal(expected, actual);
        expected.Dispose();
    }

    [Fact]
    public void AFileWithoutTheBiasOfANormThatHasOne_IsRefusedNamingTheFileAndTensor()
    {
        using (var source = new TargetNormModel())
        {
            source.ApplyTargets(new PeftTargets(TargetModules.Names("ln_nobias"), new LNTuningOptions()));
            AdapterFiles.Save(source, _dir);
        }

        // Point the config at the norm with a bias: the file holds no bias for it.
        string configPath = Path.Combine(_dir, AdapterFiles.ConfigFileName);
        var config = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        config["target_modules"] = new JsonArray("ln");
        File.WriteAllText(configPath, config.ToJsonString());
        string weights = Path.Combine(_dir, AdapterFiles.WeightsFileName);
        Dictionary<string, Tensor> renamed;
        using (var file = SafetensorsFile.Open(weights))
        {
            renamed = file.Tensors.ToDictionary(t => t.Name.Replace("ln_nobias", "ln", StringComparison.Ordinal), t => file.ReadTensor(t.Name));
        }
        SafetensorsFile.Write(weights, renamed);

        using var model = new TargetNormModel();
        var ex = Assert.ThrowsAny<Exception>(() => model.LoadAdapterWithTargets(_dir));
        Assert.Contains("ln.ln_tuning_layers.bias", ex.Message);
        Assert.DoesNotContain("default", model.AdapterNames());
    }

    [Fact]
    public void TheRuleCountsWeightAndBias()
    {
        Assert.Equal(8, LNTuningRules.ParameterCount(4, hasBias: true));
        Assert.Equal(4, LNTuningRules.ParameterCount(4, hasBias: false));
    }

    [Fact]
    public void ANormOverSeveralDimensions_IsRefusedWhenWrapped()
    {
        var ex = Assert.Throws<PeftConfigurationException>(() => PeftLayers.Wrap(nn.LayerNorm(new long[] { 2, 3 }), "patch_norm"));
        Assert.Contains("patch_norm", ex.Message);
        Assert.Contains("last dimension", ex.Message);
    }
}
