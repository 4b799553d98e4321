using Peft.Serialization;
using TorchSharp;
using static Peft.Runtime.Tests.Serialization.AdapterFilesSupport;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.Serialization;

/// <summary>ModelWeights: base weights under plain state-dict names, adapters excluded, checked loads.</summary>
public sealed class ModelWeightsTests : IDisposable
{
    private readonly SafetensorsTempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private static string[] BaseNames(nn.Module plain)
        => plain.named_parameters().Select(p => p.name).Concat(plain.named_buffers().Select(b => b.name))
            .OrderBy(n => n, StringComparer.Ordinal).ToArray();

    [Fact]
    public void Keys_are_the_plain_models_state_dict_names_without_adapter_parameters()
    {
        string file = _dir.File("base.safetensors");
        using var adapted = AfModel.Adapted();
        using var plain = AfModel.Plain();
        ModelWeights.Save(adapted, file);
        var keys = Keys(file);
        Assert.Equal(BaseNames(plain), keys);
        Assert.Equal(plain.state_dict().Keys.OrderBy(k => k, StringComparer.Ordinal), keys);
        Assert.Contains("blocks.0.attn.q_proj.weight", keys);
        Assert.DoesNotContain(keys, k => k.Contains("lora", StringComparison.Ordinal) || k.Contains(".default.", StringComparison.Ordinal));
        Assert.Equal("pt", Header(file)["__metadata__"]!["format"]!.GetValue<string>());
    }

    [Fact]
    public void Prompt_and_Kronecker_models_keep_their_base_names()
    {
        string file = _dir.File("prompt.safetensors");
        using (var prompt = new AfPromptModel()) ModelWeights.Save(prompt, file);
        Assert.Equal(new[] { "embed.weight", "head.bias", "head.weight" }, Keys(file));
        using (var kron = new AfKronModel()) ModelWeights.Save(kron, file);
        Assert.Equal(new[] { "back.bias", "back.weight", "down.bias", "down.weight", "small.bias", "small.weight", "wide.bias", "wide.weight" }, Keys(file));
    }

    [Fact]
    public void Round_trip_restores_base_weights_and_leaves_adapters_alone()
    {
        string file = _dir.File("nested/dir/base.safetensors");
        using var a = AfModel.Adapted();
        ModelWeights.Save(a, file);
        using var b = AfModel.Adapted();
        RandomizeAdapters(b);
        var adapterBefore = b.AdapterParameters().Select(p => SafetensorsBytes.Of(p.detach())).ToList();
        ModelWeights.Load(b, file);

        var aParams = a.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var adapterSet = new HashSet<object>(b.AdapterParameters(), ReferenceEqualityComparer.Instance);
        foreach (var (name, p) in b.named_parameters().Where(p => !adapterSet.Contains(p.parameter)))
            AssertBitwiseEqual(aParams[name], p);
        var adapterAfter = b.AdapterParameters().Select(p => SafetensorsBytes.Of(p.detach())).ToList();
        Assert.Equal(adapterBefore, adapterAfter);
    }

    [Fact]
    public void Weights_of_the_adapted_model_load_into_the_plain_model()
    {
        string file = _dir.File("base.safetensors");
        using var adapted = AfModel.Adapted();
        RandomizeAdapters(adapted);
        ModelWeights.Save(adapted, file);
        using var plain = AfModel.Plain();
        ModelWeights.Load(plain, file);
        using var x = torch.randn(4, 16);
        using var plainOut = Output(plain, x);
        using (adapted.DisableAdapters())
        {
            using var baseOut = Output(adapted, x);
            AssertBitwiseEqual(baseOut, plainOut);
        }
    }

    [Fact]
    public void Mismatches_are_all_listed_by_name_and_nothing_is_loaded()
    {
        string file = _dir.File("base.safetensors");
        using (var a = AfModel.Adapted()) ModelWeights.Save(a, file);
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        using (var reader = SafetensorsFile.Open(file))
        {
            foreach (var info in reader.Tensors) tensors[info.Name] = reader.ReadTensor(info.Name);
        }
        tensors.Remove("head.bias", out var removed);
        removed!.Dispose();
        tensors["blocks.0.attn.o_proj.weight"].Dispose();
        tensors["blocks.0.attn.o_proj.weight"] = torch.zeros(16, 9);
        tensors["blocks.0.attn.extra.weight"] = torch.zeros(2);
        SafetensorsFile.Write(file, tensors.ToList());
        foreach (var t in tensors.Values) t.Dispose();

        using var model = AfModel.Adapted();
        var before = Snapshot(model);
        var ex = Assert.Throws<TensorMismatchException>(() => ModelWeights.Load(model, file));
        Assert.Equal(new[] { "head.bias" }, ex.MissingKeys);
        Assert.Equal(new[] { "blocks.0.attn.extra.weight" }, ex.UnexpectedKeys);
        Assert.Equal(new[] { "blocks.0.attn.o_proj.weight: file [16, 9], model [16, 8]" }, ex.ShapeMismatches);
        Assert.Contains("head.bias", ex.Message);
        Assert.Contains(file, ex.Message);
        AssertUnchanged(before, model);
    }

    [Fact]
    public void Loading_base_weights_under_merged_adapters_is_refused()
    {
        string file = _dir.File("base.safetensors");
        using var model = AfModel.Adapted();
        ModelWeights.Save(model, file);
        RandomizeAdapters(model);
        model.Merge();
        var before = Snapshot(model);
        var ex = Assert.Throws<InvalidOperationException>(() => ModelWeights.Load(model, file));
        Assert.Contains("Unmerge", ex.Message);
        AssertUnchanged(before, model);
    }

    [Fact]
    public void Missing_and_corrupt_files_are_reported_by_path()
    {
        using var model = AfModel.Adapted();
        string missing = _dir.File("missing.safetensors");
        Assert.Throws<FileNotFoundException>(() => ModelWeights.Load(model, missing));
        string corrupt = _dir.WriteRaw("corrupt.safetensors", SafetensorsBytes.Build("{not json", Array.Empty<byte>()));
        var ex = Assert.Throws<SafetensorsFormatException>(() => ModelWeights.Load(model, corrupt));
        Assert.Contains(corrupt, ex.Message);
    }

    [Fact]
    public void Saving_over_an_existing_file_leaves_no_temporary_files()
    {
        string file = _dir.File("base.safetensors");
        using var a = AfModel.Adapted();
        ModelWeights.Save(a, file);
        using var b = AfModel.Adapted();
        ModelWeights.Save(b, file);
        Assert.Equal(new[] { "base.safetensors" }, _dir.FileNames());
        using var c = AfModel.Adapted();
        ModelWeights.Load(c, file);
        var bParams = b.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, p) in c.named_parameters().Where(p => !p.name.Contains(".default.", StringComparison.Ordinal)))
            AssertBitwiseEqual(bParams[name], p);
    }
}
