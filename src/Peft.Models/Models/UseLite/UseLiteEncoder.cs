using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Models.UseLite;

/// <summary>
/// The Universal Sentence Encoder lite network in TorchSharp: token embeddings (8002 x 256), taken twice as the graph
/// does, plus a sinusoidal timing signal, two <see cref="UseLiteTransformerLayer"/>s (256 to 512, then 512), mean pooling over the tokens, a 512 x 512
/// tanh layer and L2 normalisation, giving 512-d sentence embeddings. Load the pretrained weights converted by
/// <see cref="UseLiteConverter"/> with <c>Peft.Serialization.ModelWeights.Load</c>; its tensor names are this module's
/// state-dict names.
/// </summary>
/// <remarks>
/// The encoder declares no adapter: <see cref="AdaptableAttribute"/> makes its layers targetable by configuration
/// (<see cref="UseLiteTargets"/>). With a prompt active on <c>embeddings</c> (prompt tuning), the virtual tokens come
/// first, take the timing signal of positions 0 to V - 1 (the text's tokens move up by V, as when PEFT prepends prompts
/// to a model with position embeddings), are attended to by every token, and are left out of the mean pooling.
/// </remarks>
[Adaptable]
public sealed partial class UseLiteEncoder : Module<Tensor, Tensor, Tensor>, ITransformerStack
{
    private Module<Tensor, Tensor> embeddings;
    private readonly Tensor inv_timescales;
    private readonly ModuleList<UseLiteTransformerLayer> layers;
    private Module<Tensor, Tensor> pooler;

    /// <summary>Creates the network with random weights (load converted weights before use).</summary>
    public UseLiteEncoder() : base(nameof(UseLiteEncoder))
    {
        embeddings = Embedding(UseLiteConfig.VocabularySize, UseLiteConfig.EmbeddingDim);
        inv_timescales = ones(UseLiteConfig.EmbeddingDim / 2);
        layers = new ModuleList<UseLiteTransformerLayer>(
            Enumerable.Range(0, UseLiteConfig.Layers).Select(i => new UseLiteTransformerLayer(i)).ToArray());
        pooler = Linear(UseLiteConfig.HiddenDim, UseLiteConfig.HiddenDim);
        InitializePeft();
        _blocks = layers.Cast<nn.Module>().ToArray();
    }

    private readonly nn.Module[] _blocks;

    /// <summary>The token embeddings (<c>embeddings</c>; the timing signal has no parameters).</summary>
    public IReadOnlyList<nn.Module> EmbeddingModules => [embeddings];

    /// <summary>The two transformer layers (<c>layers.0</c>, <c>layers.1</c>).</summary>
    public IReadOnlyList<nn.Module> Blocks => _blocks;

    /// <summary>
    /// Sentence embeddings [batch, 512] (unit length) of token ids [batch, time] (int64, any value at padding) with a mask
    /// [batch, time] (true or 1 at tokens, which must come first in each row).
    /// </summary>
    public override Tensor forward(Tensor ids, Tensor mask)
    {
        using var scope = NewDisposeScope();
        var pooled = Pool(ids, mask);
        var hidden = tanh(pooler.call(pooled));
        var squaredNorm = hidden.square().sum(-1, keepdim: true).clamp_min(UseLiteConfig.L2Epsilon);
        return (hidden * squaredNorm.rsqrt()).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The mean of the last layer's states over the tokens [batch, 512], before the tanh layer (a row without tokens gives
    /// zeros, as the graph divides by max(count, 1)).
    /// </summary>
    /// <param name="ids">Token ids [batch, time], int64.</param>
    /// <param name="mask">Token mask [batch, time].</param>
    public Tensor Pool(Tensor ids, Tensor mask)
    {
        using var scope = NewDisposeScope();
        var tokens = mask.to(ScalarType.Float32);
        // The graph adds the embeddings twice: Layer_0/add = embeddings + AddTimingSignal(embeddings), and
        // AddTimingSignal returns its input plus the signal. An active prompt prepends V virtual tokens here.
        int frozen = this.GradientFreeBlocks();
        Tensor embedded;
        using (TransformerStacks.NoGradPrefix(frozen)) embedded = embeddings.call(ids);
        long virtualTokens = embedded.shape[1] - ids.shape[1];
        var valid = virtualTokens == 0
            ? tokens
            : cat([ones(ids.shape[0], virtualTokens, dtype: ScalarType.Float32, device: ids.device), tokens], 1);
        long time = embedded.shape[1];
        var validColumn = valid.unsqueeze(-1);
        // Timing signal: position p gives [sin(p * inv_timescales), cos(p * inv_timescales)].
        // A key/value prefix takes the first positions (as PEFT's past key/values do for models with positions).
        long first = this.KeyValuePrefixLength();
        var scaled = arange(first, first + time, dtype: ScalarType.Float32, device: ids.device).unsqueeze(1) * inv_timescales.unsqueeze(0);
        var timing = cat([sin(scaled), cos(scaled)], 1);
        var x = (embedded + (embedded + timing.unsqueeze(0))) * validColumn;
        x = this.RunBlocks(x, frozen, (i, h) => layers[i].call(h, valid), true, valid);
        if (virtualTokens > 0) x = x.narrow(1, virtualTokens, ids.shape[1]);
        var tokenColumn = tokens.unsqueeze(-1);
        var count = tokens.sum(1, keepdim: true).clamp_min(1.0);
        return ((x * tokenColumn).sum(1) / count).MoveToOuterDisposeScope();
    }
}
