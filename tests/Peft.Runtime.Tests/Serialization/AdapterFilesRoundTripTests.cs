using Peft.Serialization;
using TorchSharp;
using static Peft.Runtime.Tests.Serialization.AdapterFilesSupport;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.Serialization;

/// <summary>Save, then load into a freshly built model (different random init): outputs are bitwise identical.</summary>
public sealed class AdapterFilesRoundTripTests : IDisposable
{
    private readonly SafetensorsTempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>
    /// Trains (randomly) <paramref name="create"/>'s adapter, saves base weights and adapter, loads both into a fresh
    /// model and compares outputs; then loads the adapter as "other" into a third model and compares after switching.
    /// </summary>
    private void RoundTrip(Func<nn.Module<Tensor, Tensor>> create, Func<Tensor> input, Action<nn.Module, nn.Module>? checkOther = null)
    {
        string baseFile = _dir.File("base.safetensors");
        string adapterDir = _dir.File("adapter");
        using var x = input();
        using var saved = create();
        RandomizeAdapters(saved);
        ModelWeights.Save(saved, baseFile);
        AdapterFiles.Save(saved, adapterDir);
        using var expected = Output(saved, x);

        using var fresh = create();
        using (var before = Output(fresh, x))
        {
            // The fresh model really differs (its base weights and adapters are new random values).
            Assert.False(before.shape.SequenceEqual(expected.shape)
                && SafetensorsBytes.Of(before).AsSpan().SequenceEqual(SafetensorsBytes.Of(expected)));
        }
        ModelWeights.Load(fresh, baseFile);
        var result = AdapterFiles.Load(fresh, adapterDir);
        Assert.Empty(result.MissingKeys);
        Assert.Empty(result.UnexpectedKeys);
        Assert.Empty(result.ShapeMismatches);
        Assert.Equal(Keys(Path.Combine(adapterDir, AdapterFiles.WeightsFileName)).Length, result.LoadedTensors);
        using (var actual = Output(fresh, x)) AssertBitwiseEqual(expected, actual);

        // A second adapter under a new name: created from the config, inactive until selected.
        using var other = create();
        ModelWeights.Load(other, baseFile);
        using var baseOutput = Output(other, x);
        var loaded = AdapterFiles.Load(other, adapterDir, "other");
        Assert.Equal(result.LoadedTensors, loaded.LoadedTensors);
        Assert.Contains("other", other.AdapterNames());
        using (var stillDefault = Output(other, x)) AssertBitwiseEqual(baseOutput, stillDefault);
        Assert.DoesNotContain(TrainableNames(other), n => n.Contains(".other.", StringComparison.Ordinal));
        other.SetActiveAdapter("other");
        Assert.Contains(TrainableNames(other), n => n.Contains(".other.", StringComparison.Ordinal));
        using (var switched = Output(other, x)) AssertBitwiseEqual(expected, switched);
        checkOther?.Invoke(saved, other);
    }

    private static List<string> TrainableNames(nn.Module model)
    {
        model.ApplyTrainability();
        return model.named_parameters().Where(n => n.parameter.requires_grad).Select(n => n.name).ToList();
    }

    [Fact]
    public void LoRA_round_trip_is_bitwise_and_a_second_adapter_gets_the_configs_ranks()
    {
        RoundTrip(AfModel.Adapted, () => torch.randn(5, 16), (saved, other) =>
        {
            var layers = other.AdaptedLayers().ToList();
            Assert.Equal(6, layers.Count);
            foreach (var (path, layer) in layers)
            {
                var lora = Assert.IsType<LoRAAdapter>(layer.GetAdapter("other"));
                bool v = path.EndsWith("v_proj", StringComparison.Ordinal);
                Assert.Equal(v ? 2 : 4, lora.Rank);            // from rank_pattern
                Assert.Equal(v ? 4.0 : 8.0, lora.Options.Alpha); // from alpha_pattern
                Assert.Equal(new[] { "other" }, layer.ActiveAdapters);
            }
        });
    }

    [Fact]
    public void LoRA_with_rslora_round_trips_and_the_second_adapter_keeps_rslora_scaling()
    {
        RoundTrip(() => new AfGaussianModel(), () => torch.randn(4, 8), (_, other) =>
        {
            var lora = (LoRAAdapter)other.AdaptedLayers().Single().Layer.GetAdapter("other");
            Assert.True(lora.Options.UseRsLora);
            Assert.Equal(0.25, lora.Options.Dropout);
            Assert.Equal(4.0 / Math.Sqrt(2), lora.Scaling);
        });
    }

    [Fact]
    public void Kronecker_round_trip_is_bitwise_with_full_and_low_rank_factors()
    {
        RoundTrip(() => new AfKronModel(), () => torch.randn(3, 16), (_, other) =>
        {
            var layers = other.AdaptedLayers().ToDictionary(l => l.Path, l => (KroneckerAdapter)l.Layer.GetAdapter("other"));
            Assert.Equal(4, layers["small"].Options.Rank);
            Assert.Equal(8.0, layers["small"].Options.Alpha);
            Assert.Equal(2, layers["wide"].Options.Rank);
            Assert.False(layers["wide"].UsesFullW2);
        });
    }

    [Fact]
    public void Kronecker_decompose_both_round_trips()
    {
        RoundTrip(() => new AfKronBothModel(), () => torch.randn(3, 64), (_, other) =>
        {
            var kron = (KroneckerAdapter)other.AdaptedLayers().Single().Layer.GetAdapter("other");
            Assert.True(kron.Options.DecomposeBoth);
            Assert.False(kron.UsesFullW1);
        });
    }

    [Fact]
    public void Kronecker_with_a_factor_round_trips()
    {
        RoundTrip(() => new AfKronFactorModel(), () => torch.randn(3, 16), (_, other) =>
            Assert.Equal(4, ((KroneckerAdapter)other.AdaptedLayers().Single().Layer.GetAdapter("other")).Options.Factor));
    }

    [Fact]
    public void Prompt_tuning_round_trips_and_a_second_prompt_can_be_selected()
    {
        RoundTrip(() => new AfPromptModel(), () => torch.randint(0, 20, new long[] { 2, 5 }, dtype: ScalarType.Int64), (_, other) =>
        {
            var layer = other.PromptEmbeddings().Single().Layer;
            Assert.Equal(3, layer.GetPrompt("other").VirtualTokens);
            Assert.Equal("other", layer.ActiveAdapter);
        });
    }

    [Fact]
    public void Loading_twice_into_the_same_adapter_overwrites_it()
    {
        using var a = AfModel.Adapted();
        RandomizeAdapters(a);
        string dir = _dir.File("adapter");
        AdapterFiles.Save(a, dir);
        using var b = AfModel.Adapted();
        AdapterFiles.Load(b, dir);
        RandomizeAdapters(b, std: 2.0);
        AdapterFiles.Load(b, dir);
        var aParams = a.AdapterParameters();
        var bParams = b.AdapterParameters();
        Assert.Equal(aParams.Count, bParams.Count);
        for (int i = 0; i < aParams.Count; i++) AssertBitwiseEqual(aParams[i], bParams[i]);
    }

    [Fact]
    public void Float16_values_in_the_file_are_converted_to_the_models_dtype()
    {
        using var a = AfModel.Adapted();
        RandomizeAdapters(a);
        string dir = _dir.File("adapter");
        AdapterFiles.Save(a, dir);
        EditWeights(dir, tensors =>
        {
            foreach (var key in tensors.Keys.ToList())
            {
                var half = tensors[key].to(ScalarType.Float16);
                tensors[key].Dispose();
                tensors[key] = half;
            }
        });
        using var b = AfModel.Adapted();
        AdapterFiles.Load(b, dir);
        var layer = (LoRAAdapter)b.AdaptedLayers().First().Layer.GetAdapter("default");
        Assert.Equal(ScalarType.Float32, layer.A.dtype);
        var expected = (LoRAAdapter)a.AdaptedLayers().First().Layer.GetAdapter("default");
        using var rounded = expected.A.detach().to(ScalarType.Float16).to(ScalarType.Float32);
        AssertBitwiseEqual(rounded, layer.A);
    }
}
