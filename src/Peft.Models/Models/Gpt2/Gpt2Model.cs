using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Models.Gpt2;

/// <summary>
/// The GPT-2 decoder (<c>transformer</c>): token embedding <c>wte</c>, learned position embedding <c>wpe</c>, blocks
/// <c>h</c>, final <c>ln_f</c>.
/// </summary>
public sealed class Gpt2Model : nn.Module
{
    private readonly Gpt2Config _config;
    private readonly Embedding wte;
    private readonly Embedding wpe;
    private readonly ModuleList<Gpt2Block> h;
    private readonly LayerNorm ln_f;

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
        register_module(nameof(wte), wte);
        register_module(nameof(wpe), wpe);
        register_module(nameof(h), h);
        register_module(nameof(ln_f), ln_f);
    }

    /// <summary>The token embedding (also the output head when embeddings are tied).</summary>
    public Embedding Wte => wte;

    /// <summary>The position embedding.</summary>
    public Embedding Wpe => wpe;

    /// <summary>
    /// Maps token ids [batch, time] to normalised hidden states [batch, time, n_embd]. With a cache, the ids are the
    /// positions after those already cached (their position ids continue from the cache's length).
    /// </summary>
    /// <param name="ids">Token ids (int64).</param>
    /// <param name="cache">Key/value cache, or null for a full forward from position 0.</param>
    /// <exception cref="ArgumentException">The positions would exceed <c>n_positions</c>.</exception>
    public Tensor Forward(Tensor ids, KvCache? cache = null)
    {
        ArgumentNullException.ThrowIfNull(ids);
        using var scope = NewDisposeScope();
        long past = cache?.Length ?? 0;
        long time = ids.shape[1];
        if (past + time > _config.NPositions)
            throw new ArgumentException($"{past + time} positions exceed n_positions {_config.NPositions}.", nameof(ids));
        var positions = arange(past, past + time, dtype: ScalarType.Int64, device: ids.device).unsqueeze(0);
        var x = wte.call(ids) + wpe.call(positions);
        x = functional.dropout(x, _config.EmbdPdrop, training);
        foreach (var block in h) x = block.Forward(x, cache);
        return ln_f.call(x).MoveToOuterDisposeScope();
    }
}
