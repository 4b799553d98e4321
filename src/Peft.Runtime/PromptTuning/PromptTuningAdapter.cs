using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// One prompt-tuning adapter: <c>V</c> learned virtual-token embeddings, held in the parameter
/// <c>prompt_embeddings</c> <c>[V, dim]</c> (the tensor name PEFT saves).
/// </summary>
public sealed class PromptTuningAdapter : nn.Module
{
    /// <summary>The parameter name (and PEFT's saved tensor name).</summary>
    internal const string PromptEmbeddingsName = "prompt_embeddings";

    private Parameter _prompt;

    /// <summary>Creates a prompt adapter initialised from a standard normal distribution (PEFT's RANDOM init).</summary>
    /// <param name="adapterName">The adapter name.</param>
    /// <param name="embeddingDim">The embedding size of the wrapped layer.</param>
    /// <param name="options">The prompt-tuning options.</param>
    /// <param name="device">The device of the embedding weight (default: CPU).</param>
    /// <param name="dtype">The dtype of the embedding weight (default: the default dtype).</param>
    /// <param name="memberName">The member the layer belongs to, for messages (optional).</param>
    /// <exception cref="PeftConfigurationException">The name or options are invalid.</exception>
    public PromptTuningAdapter(string adapterName, long embeddingDim, PromptTuningOptions options,
        Device? device = null, ScalarType? dtype = null, string? memberName = null)
        : base(adapterName ?? string.Empty)
    {
        AdapterNameRules.Validate(adapterName, memberName, PromptTuningEmbedding.WeightName);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate(adapterName!, memberName);
        if (embeddingDim <= 0)
        {
            throw new PeftConfigurationException(
                $"Prompt-tuning adapter '{adapterName}'{AdapterNameRules.Describe(memberName)} needs a positive embedding size, got {embeddingDim}.",
                memberName, adapterName);
        }

        AdapterName = adapterName!;
        MemberName = memberName;
        Options = options;
        EmbeddingDim = embeddingDim;
        _prompt = nn.Parameter(torch.empty(new long[] { options.VirtualTokens, embeddingDim }, dtype: dtype, device: device));
        _prompt.DetachFromDisposeScope();
        ResetParameters();
        register_parameter(PromptEmbeddingsName, _prompt);

        // TorchSharp's to(deviceType) skips a module whose recorded device equals the target; record the real one.
        _deviceType = _prompt.device_type;
        _deviceIndex = _prompt.device_index;
    }

    /// <summary>The adapter name (PEFT's adapter_name); also the child-module name on the layer.</summary>
    public string AdapterName { get; }

    /// <summary>The member of the layer this adapter was created for, when known (used in messages).</summary>
    public string? MemberName { get; }

    /// <summary>The adapter's method (<see cref="PeftMethod.PromptTuning"/>).</summary>
    public PeftMethod Method => PeftMethod.PromptTuning;

    /// <summary>The options the adapter was created with.</summary>
    public PromptTuningOptions Options { get; }

    /// <summary>The options the adapter was created with.</summary>
    public PeftAdapterOptions Config => Options;

    /// <summary>The number of virtual tokens V.</summary>
    public int VirtualTokens => Options.VirtualTokens;

    /// <summary>The embedding size.</summary>
    public long EmbeddingDim { get; }

    /// <summary>The learned prompt <c>[V, dim]</c> (<c>prompt_embeddings</c>).</summary>
    public Parameter PromptEmbeddings => _prompt;

    /// <summary>The number of adapter parameter elements, V · dim.</summary>
    public long TrainableParameterCount => _prompt.numel();

    /// <summary>The adapter's tensors under PEFT's names: <c>prompt_embeddings</c>.</summary>
    /// <returns>(PEFT name, parameter) pairs.</returns>
    public IEnumerable<(string PeftName, Parameter Parameter)> PeftTensors()
    {
        yield return (PromptEmbeddingsName, _prompt);
    }

    /// <summary>Re-initialises the prompt from a standard normal distribution (PEFT's RANDOM init).</summary>
    public void ResetParameters()
    {
        using var noGrad = torch.no_grad();
        nn.init.normal_(_prompt, mean: 0.0, std: 1.0);
    }

    /// <summary>Components are registered explicitly; TorchSharp's reflection-based registration is not used.</summary>
    protected override void RegisterComponents()
    {
    }

    /// <summary>Moves or converts the adapter, then refreshes the cached parameter.</summary>
    /// <param name="dtype">The target element type, if converting.</param>
    /// <param name="device">The target device, if moving.</param>
    /// <param name="non_blocking">Whether to copy asynchronously where possible.</param>
    protected override void _toEpilog(ScalarType? dtype, Device? device, bool non_blocking)
    {
        base._toEpilog(dtype, device, non_blocking);
        _prompt = _internal_params[PromptEmbeddingsName];
    }
}
