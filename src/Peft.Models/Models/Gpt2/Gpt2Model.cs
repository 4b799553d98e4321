using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Models.Gpt2;

/// <summary>
/// The GPT-2 decoder (<c>transformer</c>): token embedding <c>wte</c>, learned position embedding <c>wpe</c>, blocks
/// <c>h</c>, final <c>ln_f</c>. <see cref="AdaptableAttribute"/>: the token embedding can be adapted by configuration
/// (prompt tuning, <see cref="Gpt2Targets.PromptEmbedding"/>) and <c>ln_f</c> too (LayerNorm tuning).
/// </summary>
/// <remarks>With an active prompt the token embedding prepends V virtual tokens, which take positions 0 to V - 1 of
/// <c>wpe</c> (the text moves up by V, as when PEFT passes the prompt and the text as <c>inputs_embeds</c>). With a cache the
/// prompt enters it on the first forward; later forwards drop the prefix their embedding prepends again.</remarks>
[Adaptable]
public sealed partial class Gpt2Model : nn.Module, ITransformerStack
{
    private readonly Gpt2Config _config;
    private Module<Tensor, Tensor> wte;
    private readonly Embedding wpe;
    private readonly ModuleList<Gpt2Block> h;
    private Module<Tensor, Tensor> ln_f;

    /// <summary>Creates the decoder for <paramref name="config"/>.</summary>
    /// <param name="config">Model sizes.</param>
    public Gpt2Model(Gpt2Config config) : base(nameof(Gpt2Model))
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        _config = config;
        wte = Embedding(config.VocabSize, config.NEmbd);
        wpe = Embedding(config.NPositions, config.NEmbd);
        h = new ModuleList<Gpt2Block>(Enumerable.Range(0, config.NLayer).Select(i => new Gpt2Block(config, i)).ToArray());
        ln_f = LayerNorm(config.NEmbd, config.LayerNormEpsilon);
        InitializePeft();
        _blocks = h.Cast<nn.Module>().ToArray();
    }

    private readonly nn.Module[] _blocks;

    /// <summary>The token and position embeddings (<c>wte</c>, <c>wpe</c>).</summary>
    public IReadOnlyList<nn.Module> EmbeddingModules => [wte, wpe];

    /// <summary>The blocks (<c>h.0</c> … <c>h.N-1</c>).</summary>
    public IReadOnlyList<nn.Module> Blocks => _blocks;

    /// <summary>The token embedding (an <see cref="AdaptedEmbedding"/> once configuration targeting wrapped it).</summary>
    public Module<Tensor, Tensor> Wte => wte;

    /// <summary>The token embedding's weight [vocab, n_embd] (also the output head when embeddings are tied).</summary>
    public Parameter WteWeight => EmbeddingWeight.Of(wte, nameof(wte));

    /// <summary>The position embedding.</summary>
    public Embedding Wpe => wpe;

    /// <summary>
    /// Maps token ids [batch, time] to normalised hidden states [batch, time, n_embd] ([batch, V + time, n_embd] on a forward
    /// without cached positions while a prompt of V virtual tokens is active). With a cache, the ids are the positions
    /// after those already cached (their position ids continue from the cache's length).
    /// </summary>
    /// <param name="ids">Token ids (int64).</param>
    /// <param name="cache">Key/value cache, or null for a full forward from position 0.</param>
    /// <exception cref="ArgumentException">The positions would exceed <c>n_positions</c>.</exception>
    public Tensor Forward(Tensor ids, KvCache? cache = null)
    {
        ArgumentNullException.ThrowIfNull(ids);
        using var scope = NewDisposeScope();
        long cached = cache?.Length ?? 0;
        long prefix = this.KeyValuePrefixLength();   // a key/value prefix takes the first positions, as PEFT's past key/values do
        long time = ids.shape[1];
        if (prefix + cached + time > _config.NPositions)
            throw new ArgumentException($"{prefix + cached + time} positions ({prefix} prefix positions included) exceed n_positions {_config.NPositions}.", nameof(ids));
        int frozen = this.GradientFreeBlocks();
        Tensor x;
        using (TransformerStacks.NoGradPrefix(frozen)) x = Embed(ids, prefix, cached, time);

        x = this.RunBlocks(x, frozen, (i, hidden) => h[i].Forward(hidden, cache), cache is null);
        return ln_f.call(x).MoveToOuterDisposeScope();
    }

    private Tensor Embed(Tensor ids, long prefix, long cached, long time)
    {
        var x = wte.call(ids);
        long virtualTokens = x.shape[1] - time;
        if (virtualTokens > 0 && cached > 0) x = x.narrow(1, virtualTokens, time);   // the prompt is cached already
        long past = prefix + cached;
        long count = x.shape[1];
        if (past + count > _config.NPositions)
            throw new ArgumentException($"{past + count} positions ({virtualTokens} virtual tokens included) exceed n_positions {_config.NPositions}.", nameof(ids));
        var positions = arange(past, past + count, dtype: ScalarType.Int64, device: ids.device).unsqueeze(0);
        x = x + wpe.call(positions);
        return functional.dropout(x, _config.EmbdPdrop, training);
    }
}
