using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// One P-tuning adapter: PEFT's <c>PromptEncoder</c> on an input embedding. In training mode it holds the encoder's input
/// table <c>embedding.weight</c> <c>[V, dim]</c> (standard normal, as <c>torch.nn.Embedding</c>) and its head, PEFT's
/// <c>mlp_head</c> (<c>Linear(d, h)–ReLU–Linear(h, h)–ReLU–Linear(h, d)</c>) or <c>lstm_head</c> (a bidirectional LSTM) and an
/// <c>mlp_head</c> <c>Linear(2h, 2h)–ReLU–Linear(2h, d)</c>, all with PyTorch's default initialisation; the prompt
/// <c>encoder(embedding.weight)</c> is recomputed on every forward and prepended as prompt tuning's. Its PEFT file holds
/// that output as <c>prompt_embeddings</c> (<see cref="IComputedFileTensorsAdapter"/>). In inference mode (what a file loads
/// into) it holds the prompt itself as a frozen <c>embedding.weight</c> and no encoder, as PEFT does.
/// </summary>
public sealed class PTuningAdapter : PeftAdapter, IPrefixAdapter, IComputedFileTensorsAdapter
{
    /// <summary>The module names (PEFT's PromptEncoder attributes).</summary>
    internal const string EmbeddingName = "embedding", LstmName = "lstm_head", MlpName = "mlp_head";

    private readonly PromptTable _embedding;
    private readonly LSTM? _lstm;
    private readonly Sequential? _mlp;

    /// <summary>Creates the adapter with PEFT's (PyTorch's default) initialisation.</summary>
    /// <param name="adapterName">The adapter name.</param>
    /// <param name="layer">The embedding layer.</param>
    /// <param name="options">The options.</param>
    /// <exception cref="PeftConfigurationException">The name or options are invalid.</exception>
    public PTuningAdapter(string adapterName, PeftLayerInfo layer, PTuningOptions options)
        : base(adapterName, layer)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate(adapterName, layer);
        Options = options;
        long d = layer.OutFeatures, h = options.HiddenSize(d);
        _embedding = new PromptTable(options.VirtualTokens, d, layer);
        register_module(EmbeddingName, _embedding);
        if (!options.InferenceMode)
        {
            if (options.EncoderType == PromptEncoderType.LSTM)
            {
                _lstm = nn.LSTM(d, h, options.EncoderNumLayers, bias: true, batchFirst: true, dropout: options.EncoderDropout, bidirectional: true,
                    device: layer.Device, dtype: layer.DType);
                register_module(LstmName, _lstm);
                _mlp = nn.Sequential(
                    ("0", nn.Linear(2 * h, 2 * h, device: layer.Device, dtype: layer.DType)),
                    ("1", nn.ReLU()),
                    ("2", nn.Linear(2 * h, d, device: layer.Device, dtype: layer.DType)));
            }
            else
            {
                _mlp = nn.Sequential(
                    ("0", nn.Linear(d, h, device: layer.Device, dtype: layer.DType)),
                    ("1", nn.ReLU()),
                    ("2", nn.Linear(h, h, device: layer.Device, dtype: layer.DType)),
                    ("3", nn.ReLU()),
                    ("4", nn.Linear(h, d, device: layer.Device, dtype: layer.DType)));
            }

            register_module(MlpName, _mlp);
        }

        ResetParameters();
        TrackDevice(Table);
    }

    /// <summary>The options the adapter was created with.</summary>
    public PTuningOptions Options { get; }

    /// <inheritdoc />
    public override PeftAdapterOptions Config => Options;

    /// <summary>The number of virtual tokens V.</summary>
    public int VirtualTokens => Options.VirtualTokens;

    /// <summary>The table <c>embedding.weight</c> <c>[V, dim]</c>: the encoder's input in training mode, the prompt itself in
    /// inference mode.</summary>
    public Parameter Table => _embedding.Weight;

    /// <summary>The encoder's head modules (<c>lstm_head</c>, <c>mlp_head</c>); empty in inference mode.</summary>
    public IEnumerable<(string Name, nn.Module Module)> Heads
    {
        get
        {
            if (_lstm is not null) yield return (LstmName, _lstm);
            if (_mlp is not null) yield return (MlpName, _mlp);
        }
    }

    /// <inheritdoc />
    int IPrefixAdapter.Length => Options.VirtualTokens;

    /// <summary>True in training mode: the file holds the encoder's output, not the encoder.</summary>
    public bool ComputesFileTensors => !Options.InferenceMode;

    /// <summary>The prompt <c>[V, dim]</c> in the autograd graph: <c>encoder(embedding.weight)</c> in training mode (PEFT's
    /// <c>prompt_encoder(arange(V))</c>, whose embedding lookup of every row in order is the table itself), the table in
    /// inference mode. The caller disposes it.</summary>
    /// <returns>The prompt.</returns>
    public Tensor ComputePrefix() => Encode();

    /// <summary>PEFT's <c>prompt_embeddings</c>: the encoder's output with dropout off, detached (a new tensor).</summary>
    /// <returns>One pair.</returns>
    public IReadOnlyList<(string PeftName, Tensor Value)> ComputeFileTensors()
    {
        bool training = _lstm?.training ?? false;
        using var noGrad = torch.no_grad();
        _lstm?.eval();
        try
        {
            using var prompt = Encode();
            return new[] { (PromptTuningAdapter.PromptEmbeddingsName, prompt.detach()) };
        }
        finally
        {
            if (training) _lstm!.train();
        }
    }

    /// <summary>The adapter's tensors: in training mode under PEFT's in-memory names (<c>embedding.weight</c>, <c>lstm_head.*</c>,
    /// <c>mlp_head.*</c>; the file holds <see cref="ComputeFileTensors"/> instead); in inference mode <c>prompt_embeddings</c>.</summary>
    /// <returns>(name, parameter) pairs.</returns>
    public override IEnumerable<(string PeftName, Parameter Parameter)> PeftTensors()
    {
        if (Options.InferenceMode)
        {
            yield return (PromptTuningAdapter.PromptEmbeddingsName, Table);
            yield break;
        }

        foreach (var (name, p) in named_parameters()) yield return (name, p);
    }

    /// <summary>In inference mode the prompt table is frozen (PEFT refuses to train a loaded prompt-learning adapter; train a new
    /// adapter, or resume from a trainer checkpoint, which keeps the encoder).</summary>
    /// <returns>The table in inference mode, nothing in training mode.</returns>
    public override IEnumerable<Parameter> FrozenParameters() => Options.InferenceMode ? new[] { Table } : Array.Empty<Parameter>();

    /// <summary>Re-initialises as PyTorch's defaults, which PEFT keeps: the table standard normal; each Linear's weight
    /// Kaiming-uniform (a = sqrt(5)) and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)); every LSTM weight and bias U(-1/sqrt(h), 1/sqrt(h)).</summary>
    public void ResetParameters()
    {
        using var noGrad = torch.no_grad();
        nn.init.normal_(Table, mean: 0.0, std: 1.0);
        if (_lstm is not null)
        {
            double bound = 1.0 / Math.Sqrt(Options.HiddenSize(OutFeatures));
            foreach (var (_, p) in _lstm.named_parameters()) nn.init.uniform_(p, -bound, bound);
        }

        foreach (var linear in _mlp?.children().OfType<Linear>() ?? Enumerable.Empty<Linear>())
        {
            nn.init.kaiming_uniform_(linear.weight!, a: Math.Sqrt(5));
            double bound = 1.0 / Math.Sqrt(linear.weight!.shape[1]);
            nn.init.uniform_(linear.bias!, -bound, bound);
        }
    }

    private Tensor Encode()
    {
        var table = Table;
        if (_mlp is null) return table.alias();
        if (_lstm is null) return _mlp.call(table);

        using var scope = torch.NewDisposeScope();
        using var batch = table.unsqueeze(0);
        long states = 2L * Options.EncoderNumLayers;
        long h = Options.HiddenSize(OutFeatures);
        using var h0 = torch.zeros(states, 1, h, dtype: table.dtype, device: table.device);
        using var c0 = torch.zeros(states, 1, h, dtype: table.dtype, device: table.device);
        var (output, hN, cN) = _lstm.call(batch, (h0, c0));
        using (output)
        using (hN)
        using (cN)
        using (var head = _mlp.call(output))
        {
            return head.squeeze(0).MoveToOuterDisposeScope();
        }
    }
}

/// <summary>PEFT's <c>embedding</c> module reduced to its one parameter <c>weight</c> <c>[V, dim]</c>: the prompt encoder looks
/// up every row in order (<c>arange(V)</c>), which is the table itself. A managed parameter, so the same object is returned on
/// every access (trainability and frozen sets compare parameters by reference).</summary>
internal sealed class PromptTable : nn.Module
{
    private Parameter _weight;

    public PromptTable(long rows, long dim, PeftLayerInfo layer)
        : base("embedding")
    {
        _weight = nn.Parameter(torch.empty(new[] { rows, dim }, dtype: layer.DType, device: layer.Device));
        _weight.DetachFromDisposeScope();
        register_parameter("weight", _weight);
    }

    public Parameter Weight => _weight;

    protected override void _toEpilog(ScalarType? dtype, Device? device, bool non_blocking)
    {
        base._toEpilog(dtype, device, non_blocking);
        _weight = (Parameter)named_parameters(recurse: false).Single(p => p.name == "weight").parameter;
    }

    protected override void RegisterComponents()
    {
    }
}
