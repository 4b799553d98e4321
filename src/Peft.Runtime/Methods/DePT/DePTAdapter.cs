using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// One DePT adapter: the prompt <c>prompt_embeddings</c> <c>[V, dim]</c> (standard normal, prepended as prompt tuning's) and
/// the position table <c>(alpha / sqrt(r)) · A B</c> added to the token embeddings, <c>A = lora_embedding_A</c> <c>[S, r]</c>
/// (Kaiming-uniform with a = sqrt(5), as the DePT code) and <c>B = lora_embedding_B</c> <c>[r, dim]</c> (zeros), so a new
/// adapter is prompt tuning until B moves.
/// </summary>
public sealed class DePTAdapter : PeftAdapter, IPrefixAdapter, IPositionOffsetAdapter, IPromptTable
{
    /// <summary>The table's registered names (the fork saves them as <c>prompt_encoder.lora_embedding_A/B</c>).</summary>
    internal const string AName = "lora_embedding_A", BName = "lora_embedding_B";

    /// <summary>The key prefix the DePT fork's files give the table.</summary>
    internal const string FilePrefix = "prompt_encoder.";

    private Parameter _prompt, _a, _b;

    /// <summary>Creates the adapter with the DePT code's initialisation.</summary>
    /// <param name="adapterName">The adapter name.</param>
    /// <param name="layer">The embedding layer.</param>
    /// <param name="options">The options.</param>
    /// <exception cref="PeftConfigurationException">The name or options are invalid.</exception>
    public DePTAdapter(string adapterName, PeftLayerInfo layer, DePTOptions options)
        : base(adapterName, layer)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate(adapterName, layer);
        Options = options;
        _prompt = CreateParameter(PromptTuningAdapter.PromptEmbeddingsName, options.VirtualTokens, layer.OutFeatures);
        _a = CreateParameter(AName, options.MaxLength, options.Rank);
        _b = CreateParameter(BName, options.Rank, layer.OutFeatures);
        ResetParameters();
        TrackDevice(_prompt);
    }

    /// <summary>The options the adapter was created with.</summary>
    public DePTOptions Options { get; }

    /// <inheritdoc />
    public override PeftAdapterOptions Config => Options;

    /// <summary>The number of prompt tokens V.</summary>
    public int VirtualTokens => Options.VirtualTokens;

    /// <summary>The prompt <c>[V, dim]</c>.</summary>
    public Parameter PromptEmbeddings => _prompt;

    /// <summary>The table's left factor <c>A</c> <c>[S, r]</c>.</summary>
    public Parameter A => _a;

    /// <summary>The table's right factor <c>B</c> <c>[r, dim]</c>.</summary>
    public Parameter B => _b;

    /// <summary>The table's parameters (A and B), which DePT trains with their own learning rate.</summary>
    public IEnumerable<Parameter> TableParameters => new[] { _a, _b };

    /// <inheritdoc />
    Tensor IPrefixAdapter.ComputePrefix() => _prompt.alias();

    /// <inheritdoc />
    int IPrefixAdapter.Length => Options.VirtualTokens;

    /// <inheritdoc />
    public int Positions => Options.MaxLength;

    /// <inheritdoc />
    string? IPromptTable.InitText => Options.InitText;

    /// <summary>The table <c>(alpha / sqrt(r)) · A B</c> <c>[S, dim]</c> (a new tensor).</summary>
    /// <returns>The table.</returns>
    public Tensor ComputeOffset()
    {
        using var product = _a.matmul(_b);
        return product.mul(Options.Scaling);
    }

    /// <summary>The tensors under the DePT fork's names: <c>prompt_embeddings</c>, <c>prompt_encoder.lora_embedding_A</c>,
    /// <c>prompt_encoder.lora_embedding_B</c>.</summary>
    /// <returns>(name, parameter) pairs.</returns>
    public override IEnumerable<(string PeftName, Parameter Parameter)> PeftTensors()
    {
        yield return (PromptTuningAdapter.PromptEmbeddingsName, _prompt);
        yield return (FilePrefix + AName, _a);
        yield return (FilePrefix + BName, _b);
    }

    /// <summary>Re-initialises as the DePT code: prompt standard normal, A Kaiming-uniform (a = sqrt(5)), B zeros.</summary>
    public void ResetParameters()
    {
        using var noGrad = torch.no_grad();
        nn.init.normal_(_prompt, mean: 0.0, std: 1.0);
        nn.init.kaiming_uniform_(_a, a: Math.Sqrt(5));
        _b.zero_();
    }

    /// <summary>Moves or converts the adapter, then refreshes the cached parameters.</summary>
    /// <param name="dtype">The target element type, if converting.</param>
    /// <param name="device">The target device, if moving.</param>
    /// <param name="non_blocking">Whether to copy asynchronously where possible.</param>
    protected override void _toEpilog(ScalarType? dtype, Device? device, bool non_blocking)
    {
        base._toEpilog(dtype, device, non_blocking);
        _prompt = RegisteredParameter(PromptTuningAdapter.PromptEmbeddingsName)!;
        _a = RegisteredParameter(AName)!;
        _b = RegisteredParameter(BName)!;
    }
}

/// <summary>A prompt held as a table <c>[V, dim]</c> that a text can initialise (prompt tuning, DePT).</summary>
internal interface IPromptTable
{
    /// <summary>The prompt <c>[V, dim]</c>.</summary>
    Parameter PromptEmbeddings { get; }

    /// <summary>V.</summary>
    int VirtualTokens { get; }

    /// <summary>The init text, or null.</summary>
    string? InitText { get; }
}
