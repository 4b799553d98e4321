using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// One prompt-tuning adapter (Lester et al., 2021): <c>V</c> learned virtual-token embeddings, held in the parameter
/// <c>prompt_embeddings</c> <c>[V, dim]</c> (the tensor name PEFT saves), prepended by <see cref="AdaptedEmbedding"/>.
/// </summary>
public sealed class PromptTuningAdapter : PeftAdapter, IPrefixAdapter, IPromptTable
{
    /// <summary>The parameter name (and PEFT's saved tensor name).</summary>
    internal const string PromptEmbeddingsName = "prompt_embeddings";

    private Parameter _prompt;

    /// <summary>Creates a prompt adapter initialised from a standard normal distribution (PEFT's RANDOM init).</summary>
    /// <param name="adapterName">The adapter name.</param>
    /// <param name="layer">The embedding layer.</param>
    /// <param name="options">The prompt-tuning options.</param>
    /// <exception cref="PeftConfigurationException">The name or options are invalid.</exception>
    public PromptTuningAdapter(string adapterName, PeftLayerInfo layer, PromptTuningOptions options)
        : base(adapterName, layer)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate(adapterName, layer);
        Options = options;
        _prompt = CreateParameter(PromptEmbeddingsName, options.VirtualTokens, layer.OutFeatures);
        ResetParameters();
        TrackDevice(_prompt);
    }

    /// <summary>The options the adapter was created with.</summary>
    public PromptTuningOptions Options { get; }

    /// <inheritdoc />
    public override PeftAdapterOptions Config => Options;

    /// <summary>The number of virtual tokens V.</summary>
    public int VirtualTokens => Options.VirtualTokens;

    /// <summary>The embedding size.</summary>
    public long EmbeddingDim => Layer.OutFeatures;

    /// <summary>The learned prompt <c>[V, dim]</c> (<c>prompt_embeddings</c>).</summary>
    public Parameter PromptEmbeddings => _prompt;

    /// <inheritdoc />
    Tensor IPrefixAdapter.ComputePrefix() => _prompt.alias();

    /// <inheritdoc />
    int IPrefixAdapter.Length => Options.VirtualTokens;

    /// <inheritdoc />
    string? IPromptTable.InitText => Options.InitText;

    /// <summary>The adapter's tensors under PEFT's names: <c>prompt_embeddings</c>.</summary>
    /// <returns>(PEFT name, parameter) pairs.</returns>
    public override IEnumerable<(string PeftName, Parameter Parameter)> PeftTensors()
    {
        yield return (PromptEmbeddingsName, _prompt);
    }

    /// <summary>Re-initialises the prompt from a standard normal distribution (PEFT's RANDOM init).</summary>
    public void ResetParameters()
    {
        using var noGrad = torch.no_grad();
        nn.init.normal_(_prompt, mean: 0.0, std: 1.0);
    }

    /// <summary>Moves or converts the adapter, then refreshes the cached parameter.</summary>
    /// <param name="dtype">The target element type, if converting.</param>
    /// <param name="device">The target device, if moving.</param>
    /// <param name="non_blocking">Whether to copy asynchronously where possible.</param>
    protected override void _toEpilog(ScalarType? dtype, Device? device, bool non_blocking)
    {
        base._toEpilog(dtype, device, non_blocking);
        _prompt = RegisteredParameter(PromptEmbeddingsName)!;
    }
}

/// <summary>Shorthands for adding a prompt to an embedding layer.</summary>
public static class PromptTuningLayerExtensions
{
    /// <summary>Adds a prompt-tuning adapter (<see cref="AdaptedLayer.WithAdapter"/> with <see cref="PromptTuningOptions"/>).</summary>
    /// <param name="layer">The embedding layer.</param>
    /// <param name="adapterName">The adapter name.</param>
    /// <param name="options">The options.</param>
    /// <returns>The layer.</returns>
    public static AdaptedEmbedding WithPrompt(this AdaptedEmbedding layer, string adapterName, PromptTuningOptions options)
    {
        ArgumentNullException.ThrowIfNull(layer);
        layer.WithAdapter(adapterName, options);
        return layer;
    }

    /// <summary>The named prompt adapter of the layer.</summary>
    /// <param name="layer">The embedding layer.</param>
    /// <param name="adapterName">The adapter name.</param>
    /// <returns>The adapter.</returns>
    /// <exception cref="PeftConfigurationException">The layer has no prompt adapter of that name.</exception>
    public static PromptTuningAdapter GetPrompt(this AdaptedEmbedding layer, string adapterName)
    {
        ArgumentNullException.ThrowIfNull(layer);
        return layer.GetAdapter(adapterName) as PromptTuningAdapter
            ?? throw new PeftConfigurationException($"Adapter '{adapterName}' on member '{layer.MemberName}' is not a prompt.", layer.MemberName, adapterName);
    }
}
