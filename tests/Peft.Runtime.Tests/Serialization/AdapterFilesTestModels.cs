using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;
using Peft.Serialization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Runtime.Tests.Serialization;

// Models written as users write them: attributes on members, InitializePeft() from the generator.

/// <summary>Attention with LoRA on q/k (rank 4, alpha 8) and v (rank 2, alpha 4); o_proj stays a plain Linear.</summary>
public sealed partial class AfAttention : Module<Tensor, Tensor>
{
    [LoRA(rank: 4, alpha: 8)] private Module<Tensor, Tensor> q_proj = Linear(16, 8);
    [LoRA(rank: 4, alpha: 8)] private Module<Tensor, Tensor> k_proj = Linear(16, 8);
    [LoRA(rank: 2, alpha: 4)] private Module<Tensor, Tensor> v_proj = Linear(16, 8);
    private Module<Tensor, Tensor> o_proj = Linear(8, 16);

    public AfAttention() : base(nameof(AfAttention)) => InitializePeft();

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = q_proj.call(x) + k_proj.call(x) + v_proj.call(x);
        return o_proj.call(functional.tanh(h)).MoveToOuterDisposeScope();
    }
}

/// <summary>The same attention without attributes (the base model a user starts from).</summary>
public sealed class AfPlainAttention : Module<Tensor, Tensor>
{
    private readonly Module<Tensor, Tensor> q_proj = Linear(16, 8);
    private readonly Module<Tensor, Tensor> k_proj = Linear(16, 8);
    private readonly Module<Tensor, Tensor> v_proj = Linear(16, 8);
    private readonly Module<Tensor, Tensor> o_proj = Linear(8, 16);

    public AfPlainAttention() : base(nameof(AfPlainAttention)) => RegisterComponents();

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = q_proj.call(x) + k_proj.call(x) + v_proj.call(x);
        return o_proj.call(functional.tanh(h)).MoveToOuterDisposeScope();
    }
}

/// <summary>A module with only a plain <c>k_proj</c>: makes the short name "k_proj" ambiguous.</summary>
public sealed class AfKOnly : Module<Tensor, Tensor>
{
    private readonly Module<Tensor, Tensor> k_proj = Linear(16, 16);

    public AfKOnly() : base(nameof(AfKOnly)) => RegisterComponents();

    public override Tensor forward(Tensor x) => k_proj.call(x);
}

/// <summary>A residual block holding an attention module.</summary>
public sealed class AfBlock : Module<Tensor, Tensor>
{
    private readonly Module<Tensor, Tensor> attn;

    public AfBlock(Module<Tensor, Tensor> attention) : base(nameof(AfBlock))
    {
        attn = attention;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var a = attn.call(x);
        return x + a;
    }
}

/// <summary>
/// Root without attributes: <c>blocks</c> (a ModuleList of two blocks, so layer paths are <c>blocks.0.attn.q_proj</c>),
/// an optional <c>extra</c> module, and a plain head.
/// </summary>
public sealed class AfModel : Module<Tensor, Tensor>
{
    private readonly ModuleList<AfBlock> blocks;
    private readonly Module<Tensor, Tensor>? extra;
    private readonly Module<Tensor, Tensor> head = Linear(16, 3);

    public AfModel(Func<Module<Tensor, Tensor>> attention, Module<Tensor, Tensor>? extra = null) : base(nameof(AfModel))
    {
        blocks = ModuleList(new AfBlock(attention()), new AfBlock(attention()));
        this.extra = extra;
        RegisterComponents();
    }

    /// <summary>Two blocks of <see cref="AfAttention"/> (LoRA on q, k, v).</summary>
    public static AfModel Adapted() => new(() => new AfAttention());

    /// <summary>The same architecture without any attribute.</summary>
    public static AfModel Plain() => new(() => new AfPlainAttention());

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = x;
        foreach (var block in blocks) h = block.call(h);
        if (extra is not null) h = h + extra.call(h);
        return head.call(h).MoveToOuterDisposeScope();
    }
}

/// <summary>One LoRA layer with every non-default LoRA setting.</summary>
public sealed partial class AfGaussianModel : Module<Tensor, Tensor>
{
    [LoRA(rank: 2, alpha: 4, dropout: 0.25, UseRsLora = true, Init = LoRAInit.Gaussian)]
    private Module<Tensor, Tensor> fc = Linear(8, 8);

    public AfGaussianModel() : base(nameof(AfGaussianModel)) => InitializePeft();

    public override Tensor forward(Tensor x) => fc.call(x);
}

/// <summary>LoKr on a 16x16 layer (full lokr_w1/lokr_w2) and a 64x64 layer (lokr_w1 + low-rank lokr_w2_a/_b).</summary>
public sealed partial class AfKronModel : Module<Tensor, Tensor>
{
    [Kronecker(rank: 4, alpha: 8)] private Module<Tensor, Tensor> small = Linear(16, 16);
    private Module<Tensor, Tensor> down = Linear(16, 64);
    [Kronecker(rank: 2, alpha: 4)] private Module<Tensor, Tensor> wide = Linear(64, 64);
    private Module<Tensor, Tensor> back = Linear(64, 16);

    public AfKronModel() : base(nameof(AfKronModel)) => InitializePeft();

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var y = small.call(x) + back.call(functional.tanh(wide.call(down.call(x))));
        return y.MoveToOuterDisposeScope();
    }
}

/// <summary>LoKr with DecomposeBoth: lokr_w1_a/_b and lokr_w2_a/_b.</summary>
public sealed partial class AfKronBothModel : Module<Tensor, Tensor>
{
    [Kronecker(rank: 2, alpha: 2, DecomposeBoth = true)] private Module<Tensor, Tensor> proj = Linear(64, 64);

    public AfKronBothModel() : base(nameof(AfKronBothModel)) => InitializePeft();

    public override Tensor forward(Tensor x) => proj.call(x);
}

/// <summary>LoKr with an explicit factor (decompose_factor 4).</summary>
public sealed partial class AfKronFactorModel : Module<Tensor, Tensor>
{
    [Kronecker(rank: 4, alpha: 4, Factor = 4)] private Module<Tensor, Tensor> proj = Linear(16, 32);

    public AfKronFactorModel() : base(nameof(AfKronFactorModel)) => InitializePeft();

    public override Tensor forward(Tensor x) => proj.call(x);
}

/// <summary>Prompt tuning (3 virtual tokens) on an embedding, mean-pooled into a plain head.</summary>
public sealed partial class AfPromptModel : Module<Tensor, Tensor>
{
    [PromptTune(virtualTokens: 3)] private Module<Tensor, Tensor> embed = Embedding(20, 8);
    private Module<Tensor, Tensor> head = Linear(8, 4);

    public AfPromptModel() : base(nameof(AfPromptModel)) => InitializePeft();

    public override Tensor forward(Tensor ids)
    {
        using var scope = NewDisposeScope();
        return head.call(embed.call(ids).mean(new long[] { 1 })).MoveToOuterDisposeScope();
    }
}

/// <summary>Prompt tuning initialised from a text.</summary>
public sealed partial class AfPromptTextModel : Module<Tensor, Tensor>
{
    [PromptTune(virtualTokens: 2, InitText = "classify this")] private Module<Tensor, Tensor> embed = Embedding(20, 8);

    public AfPromptTextModel() : base(nameof(AfPromptTextModel)) => InitializePeft();

    public override Tensor forward(Tensor ids) => embed.call(ids);
}

/// <summary>Helpers for the adapter-file tests.</summary>
internal static class AdapterFilesSupport
{
    /// <summary>Random normal values in every adapter parameter (a stand-in for training).</summary>
    public static void RandomizeAdapters(Module model, double std = 0.5)
    {
        using var noGrad = no_grad();
        foreach (var p in model.AdapterParameters()) init.normal_(p, 0.0, std);
    }

    /// <summary>A bitwise copy of every parameter and buffer by state-dict name.</summary>
    public static Dictionary<string, byte[]> Snapshot(Module model)
    {
        var result = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        foreach (var (name, p) in model.named_parameters()) result[name] = SafetensorsBytes.Of(p.detach());
        foreach (var (name, b) in model.named_buffers()) result["buffer:" + name] = SafetensorsBytes.Of(b);
        return result;
    }

    /// <summary>Asserts the model holds exactly the snapshot's tensors, bit for bit.</summary>
    public static void AssertUnchanged(Dictionary<string, byte[]> before, Module model)
    {
        var after = Snapshot(model);
        Assert.Equal(before.Keys.OrderBy(k => k, StringComparer.Ordinal), after.Keys.OrderBy(k => k, StringComparer.Ordinal));
        foreach (var (name, bytes) in before) Assert.True(bytes.AsSpan().SequenceEqual(after[name]), $"{name} changed");
    }

    /// <summary>Asserts two tensors are bitwise identical (same shape, dtype and bytes).</summary>
    public static void AssertBitwiseEqual(Tensor expected, Tensor actual)
    {
        Assert.Equal(expected.shape, actual.shape);
        Assert.Equal(expected.dtype, actual.dtype);
        Assert.True(SafetensorsBytes.Of(expected.detach()).AsSpan().SequenceEqual(SafetensorsBytes.Of(actual.detach())), "tensors differ");
    }

    /// <summary>The model's output on <paramref name="input"/> in eval mode, without gradients.</summary>
    public static Tensor Output(Module<Tensor, Tensor> model, Tensor input)
    {
        model.eval();
        using var noGrad = no_grad();
        return model.call(input);
    }

    /// <summary>The raw JSON header of a safetensors file.</summary>
    public static JsonObject Header(string path)
    {
        var bytes = File.ReadAllBytes(path);
        ulong length = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        return (JsonObject)JsonNode.Parse(Encoding.UTF8.GetString(bytes, 8, (int)length))!;
    }

    /// <summary>Tensor names of a safetensors file (metadata excluded).</summary>
    public static string[] Keys(string path)
        => Header(path).Select(p => p.Key).Where(k => k != "__metadata__").OrderBy(k => k, StringComparer.Ordinal).ToArray();

    /// <summary>Shape of a tensor in a safetensors file.</summary>
    public static long[] Shape(string path, string key)
        => Header(path)[key]!["shape"]!.AsArray().Select(n => n!.GetValue<long>()).ToArray();

    /// <summary>Parses adapter_config.json.</summary>
    public static JsonObject Config(string directory)
        => (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(directory, AdapterFiles.ConfigFileName)))!;

    /// <summary>Rewrites adapter_config.json after <paramref name="edit"/>.</summary>
    public static void EditConfig(string directory, Action<JsonObject> edit)
    {
        var config = Config(directory);
        edit(config);
        File.WriteAllText(Path.Combine(directory, AdapterFiles.ConfigFileName), config.ToJsonString());
    }

    /// <summary>Rewrites adapter_model.safetensors: reads every tensor, lets <paramref name="edit"/> change the map, writes it.</summary>
    public static void EditWeights(string directory, Action<Dictionary<string, Tensor>> edit)
    {
        string path = Path.Combine(directory, AdapterFiles.WeightsFileName);
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        using (var reader = SafetensorsFile.Open(path))
        {
            foreach (var info in reader.Tensors) tensors[info.Name] = reader.ReadTensor(info.Name);
        }
        edit(tensors);
        SafetensorsFile.Write(path, tensors.ToList(), new Dictionary<string, string> { ["format"] = "pt" });
        foreach (var t in tensors.Values) t.Dispose();
    }

    /// <summary>The tensor stored under <paramref name="key"/>.</summary>
    public static Tensor Read(string directory, string key)
    {
        using var reader = SafetensorsFile.Open(Path.Combine(directory, AdapterFiles.WeightsFileName));
        return reader.ReadTensor(key);
    }
}
