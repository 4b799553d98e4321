using Peft.Models.Bert;
using Peft.Models.Gpt2;
using Peft.Models.Llama;
using Peft.Models.Tests.Bert;
using Peft.Models.Tests.Gpt2;
using Peft.Models.Tests.Llama;
using Peft.Models.UseLite;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Models.Tests.Stacks;

/// <summary>
/// Every family's attention offers the points inside it (<see cref="AttentionInsertions"/>) the same way: a key/value prefix
/// is exactly Hugging Face's past key/values (keys placed as they are, positions starting after the prefix, seen by every
/// query), generation with a KV cache still matches the full forward, padding masks leave the prefix visible, head
/// adjustments see the heads before the output projection, and the model-level switches reach attention adapters by name.
/// </summary>
public sealed class AttentionInsertionTests
{
    private const int PrefixLength = 3;

    public static IEnumerable<object[]> Decoders => new[] { "llama", "gpt2" }.Select(f => new object[] { f });

    public static IEnumerable<object[]> Families => new[] { "llama", "gpt2", "bert", "uselite" }.Select(f => new object[] { f });

    [Theory]
    [MemberData(nameof(Decoders))]
    public void APrefixIsThePastKeysAndValuesOfACache(string family)
    {
        using var _ = no_grad();
        using var withPrefix = Create(family);
        using var plain = Create(family);
        var prefixes = InsertPrefixes(withPrefix);
        var ids = Ids(2, 6);

        // The same keys and values given as a cache: positions start after them and every query sees them.
        using var cache = new KvCache(prefixes.Count);
        for (int layer = 0; layer < prefixes.Count; layer++)
        {
            cache.Append(layer, prefixes[layer].Prefix(2).Keys, prefixes[layer].Prefix(2).Values);
        }

        var expected = Forward(family, plain, ids, cache);
        var actual = Forward(family, withPrefix, ids, null);
        Assert.True(MaxAbsDiff(expected, actual) < 1e-5, $"{family}: prefix differs from the cache by {MaxAbsDiff(expected, actual)}");
        Assert.True(MaxAbsDiff(Forward(family, plain, ids, null), actual) > 1e-3, $"{family}: the prefix changed nothing");
    }

    [Theory]
    [MemberData(nameof(Decoders))]
    public void GenerationWithACacheMatchesTheFullForwardUnderAPrefix(string family)
    {
        using var _ = no_grad();
        using var model = Create(family);
        InsertPrefixes(model);
        var ids = Ids(2, 9);
        var full = Forward(family, model, ids, null);
        using var cache = new KvCache(TransformerBlocks.Find(model).Blocks.Count);
        var parts = new List<Tensor> { Forward(family, model, ids[.., ..4], cache), Forward(family, model, ids[.., 4..6], cache) };
        for (int t = 6; t < 9; t++) parts.Add(Forward(family, model, ids[.., t..(t + 1)], cache));
        Assert.Equal(9, cache.Length);   // the cache holds the tokens only; the prefix is placed before them on every call
        var cached = cat(parts, 1);
        Assert.True(MaxAbsDiff(full, cached) < 1e-5, $"{family}: cached generation differs by {MaxAbsDiff(full, cached)}");
    }

    [Fact]
    public void BertPaddingMasksLeaveThePrefixVisible()
    {
        using var _ = no_grad();
        using var model = TinyBert.Create(3);
        InsertPrefixes(model);
        var ids = Ids(1, 5);
        var padded = cat([ids, zeros(1, 3, dtype: ScalarType.Int64)], 1);
        var mask = cat([ones(1, 5, dtype: ScalarType.Int64), zeros(1, 3, dtype: ScalarType.Int64)], 1);
        var (alone, _) = model.Bert.Forward(ids);
        var (withPadding, _) = model.Bert.Forward(padded, mask);
        Assert.True(MaxAbsDiff(alone, withPadding[.., ..5]) < 1e-5, $"padding changed the tokens' states by {MaxAbsDiff(alone, withPadding[.., ..5])}");
    }

    [Fact]
    public void UseLitePrefixesFollowEachLayersWidthAndPaddingLeavesThemVisible()
    {
        using var _ = no_grad();
        using var model = (UseLiteEncoder)Create("uselite");
        var prefixes = InsertPrefixes(model);
        Assert.Equal(256 / 4, prefixes[0].Geometry.HeadDim);   // layer 0 reads the 256-wide embeddings
        Assert.Equal(512 / 4, prefixes[1].Geometry.HeadDim);
        var ids = Ids(1, 4);
        var alone = model.call(ids, ones(1, 4, dtype: ScalarType.Bool));
        var padded = model.call(cat([ids, zeros(1, 2, dtype: ScalarType.Int64)], 1), cat([ones(1, 4, dtype: ScalarType.Bool), zeros(1, 2, dtype: ScalarType.Bool)], 1));
        Assert.True(MaxAbsDiff(alone, padded) < 1e-5, $"padding changed the embedding by {MaxAbsDiff(alone, padded)}");
        using var plain = Create("uselite");
        Assert.True(MaxAbsDiff(((UseLiteEncoder)plain).call(ids, ones(1, 4, dtype: ScalarType.Bool)), alone) > 1e-4, "the prefix changed nothing");
    }

    [Fact]
    public void HeadAdjustmentsActOnTheHeadsBeforeTheOutputProjection()
    {
        using var _ = no_grad();
        using var model = TinyLlama.Create(6);
        var attention = model.named_modules().Select(m => m.module).OfType<LlamaAttention>().First();
        var x = randn(2, 5, TinyLlama.Config().HiddenSize);
        var (cos, sin) = LlamaRotaryEmbedding.Tables(0, 5, TinyLlama.Config().HeadDim, 10000.0, ScalarType.Float32, x.device);
        var before = attention.Forward(x, cos, sin, null);
        attention.Insertions.Insert(new HeadScale("double", 2.0));
        var after = attention.Forward(x, cos, sin, null);
        // o_proj has no bias, so doubling every head doubles the attention's output.
        Assert.True(MaxAbsDiff(before * 2, after) < 1e-5, $"doubling the heads gave {MaxAbsDiff(before * 2, after)} off twice the output");
        Assert.Equal(4, ((HeadScale)attention.Insertions.Point!.Adapters[0]).SeenQueries);
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void SwitchesReachAttentionAdaptersByNameAndOnlyTheyTrain(string family)
    {
        using var reference = Create(family);
        using var model = Create(family);
        InsertPrefixes(model);
        Assert.Contains(model.named_parameters(), p => p.name.EndsWith(".insertions.adapters.prefix.keys", StringComparison.Ordinal));
        model.ApplyTrainability();
        Assert.All(model.named_parameters(), p => Assert.Equal(p.name.Contains(".insertions.", StringComparison.Ordinal) || IsHead(p.name), p.parameter.requires_grad));
        Assert.Contains("prefix", model.AdapterNames());
        using (no_grad())
        {
            var y0 = Forward(family, reference, Ids(2, 4), null);
            using (model.DisableAdapters()) Assert.True(MaxAbsDiff(y0, Forward(family, model, Ids(2, 4), null)) == 0, $"{family}: disabled prefix still acts");
            Assert.True(MaxAbsDiff(y0, Forward(family, model, Ids(2, 4), null)) > 1e-5, $"{family}: the prefix did not come back");
            model.DeleteAdapter("prefix");
            Assert.True(MaxAbsDiff(y0, Forward(family, model, Ids(2, 4), null)) == 0, $"{family}: a deleted prefix still acts");
        }

        Assert.DoesNotContain(model.named_parameters(), p => p.name.Contains(".adapters.prefix.", StringComparison.Ordinal));
    }

    private static List<FixedPrefix> InsertPrefixes(nn.Module model)
    {
        var (_, attentions) = TransformerBlocks.FindAttentions(model);
        var prefixes = attentions.Select(a => new FixedPrefix("prefix", a.Geometry, PrefixLength)).ToList();
        for (int i = 0; i < attentions.Count; i++) attentions[i].Insert(prefixes[i]);
        return prefixes;
    }

    private sealed class FixedPrefix : AttentionAdapter
    {
        public FixedPrefix(string name, AttentionGeometry geometry, int length) : base(name)
        {
            Geometry = geometry;
            // Deterministic and distinct per layer, without the global generator.
            long count = (long)geometry.KeyValueHeads * length * geometry.HeadDim;
            Keys = nn.Parameter(arange(count, dtype: ScalarType.Float32).mul(0.37 + geometry.Layer).sin().view(geometry.KeyValueHeads, length, geometry.HeadDim));
            Values = nn.Parameter(arange(count, dtype: ScalarType.Float32).mul(0.53 + geometry.Layer).cos().view(geometry.KeyValueHeads, length, geometry.HeadDim));
            register_parameter("keys", Keys);
            register_parameter("values", Values);
        }

        public AttentionGeometry Geometry { get; }

        public TorchSharp.Modules.Parameter Keys { get; }

        public TorchSharp.Modules.Parameter Values { get; }

        public override long PrefixLength => Keys.shape[1];

        public override (Tensor Keys, Tensor Values) Prefix(long batch) =>
            (Keys.unsqueeze(0).expand(batch, -1, -1, -1), Values.unsqueeze(0).expand(batch, -1, -1, -1));
    }

    private sealed class HeadScale : AttentionAdapter
    {
        private readonly double _factor;

        public HeadScale(string name, double factor) : base(name) => _factor = factor;

        public long SeenQueries { get; private set; }

        public override bool AdjustsHeads => true;

        public override Tensor AdjustHeads(AttentionContext context, Tensor heads)
        {
            SeenQueries = context.Queries.shape[1];
            Assert.Equal(heads.shape, context.Queries.shape);
            var (k, v) = context.ProjectKeysValues(zeros(1, 2, context.Geometry.HiddenSize));
            Assert.Equal(new long[] { 1, context.Geometry.KeyValueHeads, 2, context.Geometry.HeadDim }, k.shape);
            Assert.Equal(k.shape, v.shape);
            return heads * _factor;
        }
    }

    private static nn.Module Create(string family)
    {
        switch (family)
        {
            case "llama": return TinyLlama.Create(5);
            case "gpt2": return TinyGpt2.Create(5, tie: false);
            case "bert": return TinyBert.Create(5);
            default:
                manual_seed(5);
                var encoder = new UseLiteEncoder();
                encoder.eval();
                return encoder;
        }
    }

    private static Tensor Ids(long batch, long time) => arange(batch * time, dtype: ScalarType.Int64).mul(7).remainder(50).add(1).view(batch, time);

    private static Tensor Forward(string family, nn.Module model, Tensor ids, KvCache? cache) => family switch
    {
        "llama" => ((LlamaForCausalLM)model).Forward(ids, cache),
        "gpt2" => ((Gpt2LMHeadModel)model).Forward(ids, cache),
        "bert" => ((BertForSequenceClassification)model).call(ids),
        _ => ((UseLiteEncoder)model).call(ids, ones(ids.shape[0], ids.shape[1], dtype: ScalarType.Bool)),
    };

    private static bool IsHead(string name) => name.StartsWith("classifier.", StringComparison.Ordinal) || name.StartsWith("score.", StringComparison.Ordinal);

    private static double MaxAbsDiff(Tensor a, Tensor b) => (a - b).abs().max().item<float>();
}
