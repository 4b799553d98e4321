using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// One bottleneck adapter at a block's sub-layer, laid out as the adapters library's <c>Adapter</c> module so its keys read
/// the same: <c>adapter_down</c> = [Linear(in → r), activation] (<c>adapter_down.0.weight</c>/<c>.bias</c>) and
/// <c>adapter_up</c> = Linear(r → out). Series: <c>h ← h + s·up(σ(down(h)))</c> on the sub-layer output; parallel:
/// <c>h ← h + s·up(σ(down(x)))</c> from the sub-layer input (<see cref="BottleneckConfig"/>). Not mergeable. With
/// <see cref="BottleneckConfig.PhmLayer"/> (Compacter) both projections are <see cref="PhmLayer"/>s
/// (<c>adapter_down.0.W_left</c>, <c>.W_right</c>, <c>.b</c>; <c>adapter_up.W_left</c>, …) and the rule they share with
/// every adapter of the name is bound with <see cref="Bind"/>.
/// </summary>
public sealed class BottleneckAdapter : SublayerAdapter, ISharedTensorAdapter
{
    private readonly Sequential adapter_down;
    private readonly nn.Module<Tensor, Tensor> adapter_up;
    private SharedAdapterTensors? _shared;

    /// <summary>Creates the adapter for a sub-layer reading <paramref name="inputFeatures"/> and writing
    /// <paramref name="outputFeatures"/> features.</summary>
    /// <param name="adapterName">The adapter's name.</param>
    /// <param name="config">The configuration (validated).</param>
    /// <param name="inputFeatures">Width the down projection reads: the sub-layer's output (series) or input (parallel).</param>
    /// <param name="outputFeatures">Width of the sub-layer's output.</param>
    /// <param name="where">The insertion point, for messages (e.g. "layers.0.output_adapters").</param>
    /// <exception cref="PeftConfigurationException">The bottleneck would have no features.</exception>
    public BottleneckAdapter(string adapterName, BottleneckConfig config, long inputFeatures, long outputFeatures, string where) : base(adapterName)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        Config = config;
        long r = config.Bottleneck(outputFeatures);
        if (r < 1)
        {
            throw new PeftConfigurationException(
                $"Bottleneck adapter '{adapterName}' at {where}: reduction_factor = {BottleneckConfig.Show(config.ReductionFactor)} leaves no feature of the " +
                $"{outputFeatures}-wide output (floor({outputFeatures} / {BottleneckConfig.Show(config.ReductionFactor)}) = 0); use a reduction_factor of at most {outputFeatures}.",
                null, adapterName);
        }

        Bottleneck = r;
        if (config.PhmLayer)
        {
            adapter_down = nn.Sequential(("0", new PhmLayer(inputFeatures, r, config.PhmDim, config.PhmRank, where + ".adapter_down.0")), ("1", Activation(config.NonLinearity)));
            adapter_up = new PhmLayer(r, outputFeatures, config.PhmDim, config.PhmRank, where + ".adapter_up");
        }
        else
        {
            adapter_down = nn.Sequential(("0", nn.Linear(inputFeatures, r)), ("1", Activation(config.NonLinearity)));
            adapter_up = nn.Linear(r, outputFeatures);
        }

        register_module(nameof(adapter_down), adapter_down);
        register_module(nameof(adapter_up), adapter_up);
        if (!config.PhmLayer) Initialize();
    }

    /// <summary>The configuration.</summary>
    public BottleneckConfig Config { get; }

    /// <summary>The bottleneck width <c>r</c>.</summary>
    public long Bottleneck { get; }

    /// <summary>The down projection (<c>adapter_down.0</c>) of a plain bottleneck adapter.</summary>
    /// <exception cref="InvalidOperationException">The adapter's projections are PHM layers (use <see cref="PhmDown"/>).</exception>
    public Linear Down => adapter_down[0] as Linear ?? throw new InvalidOperationException("This is a Compacter adapter: its down projection is PhmDown.");

    /// <summary>The up projection (<c>adapter_up</c>) of a plain bottleneck adapter.</summary>
    /// <exception cref="InvalidOperationException">The adapter's projections are PHM layers (use <see cref="PhmUp"/>).</exception>
    public Linear Up => adapter_up as Linear ?? throw new InvalidOperationException("This is a Compacter adapter: its up projection is PhmUp.");

    /// <summary>The down PHM layer (<c>adapter_down.0</c>) of a Compacter adapter.</summary>
    /// <exception cref="InvalidOperationException">The adapter's projections are Linear layers (use <see cref="Down"/>).</exception>
    public PhmLayer PhmDown => adapter_down[0] as PhmLayer ?? throw new InvalidOperationException("This is a plain bottleneck adapter: its down projection is Down.");

    /// <summary>The up PHM layer (<c>adapter_up</c>) of a Compacter adapter.</summary>
    /// <exception cref="InvalidOperationException">The adapter's projections are Linear layers (use <see cref="Up"/>).</exception>
    public PhmLayer PhmUp => adapter_up as PhmLayer ?? throw new InvalidOperationException("This is a plain bottleneck adapter: its up projection is Up.");

    /// <summary>The shared rule set of a Compacter adapter (null for a plain one, or before binding).</summary>
    public SharedAdapterTensors? SharedTensors => _shared;

    /// <inheritdoc />
    public string? Misfit(SharedAdapterTensors tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        if (!Config.PhmLayer) return "a plain bottleneck adapter shares no tensors";
        var rule = tensors.Tensors.FirstOrDefault(t => t.Name == PhmLayer.RuleName).Tensor;
        long n = Config.PhmDim;
        return rule is not null && rule.shape.SequenceEqual(new[] { n, n, n }) ? null : $"it needs a {PhmLayer.RuleName} of shape [{n}, {n}, {n}]";
    }

    /// <inheritdoc />
    public void Bind(SharedAdapterTensors tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        if (Misfit(tensors) is { } why) throw new ArgumentException($"Bottleneck adapter '{AdapterName}' cannot bind these shared tensors: {why}.", nameof(tensors));
        var weight = PhmDown.WeightLeft;
        _shared = tensors.To(weight.dtype, weight.device);
        PhmDown.Bind(_shared);
        PhmUp.Bind(_shared);
    }

    /// <inheritdoc />
    protected override void _toEpilog(ScalarType? dtype, Device? device, bool non_blocking)
    {
        base._toEpilog(dtype, device, non_blocking);
        if (_shared is null) return;
        var weight = PhmDown.WeightLeft;
        _shared = _shared.To(weight.dtype, weight.device);
        PhmDown.Bind(_shared);
        PhmUp.Bind(_shared);
    }

    /// <inheritdoc />
    public override Tensor Apply(Tensor input, Tensor output)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(output);
        using var scope = NewDisposeScope();
        var source = Config.IsParallel ? input : output;
        var dtype = adapter_up.parameters().First().dtype;
        var up = adapter_up.call(adapter_down.call(source.to_type(dtype)));
        if (Config.Scaling != 1.0) up = up * Config.Scaling;
        return (output + up.to_type(output.dtype)).MoveToOuterDisposeScope();
    }

    private void Initialize()
    {
        using var _ = no_grad();
        var down = Down;
        nn.init.zeros_(down.bias!);
        var upLinear = Up;
        nn.init.zeros_(upLinear.bias!);
        if (Config.InitWeights == BottleneckConfig.BertInit)
        {
            nn.init.normal_(down.weight!, 0.0, 0.02);
            nn.init.normal_(upLinear.weight!, 0.0, 0.02);
        }
        else
        {
            // mam_adapter: the down projection keeps nn.Linear's kaiming_uniform(a = sqrt 5), the up projection is zero.
            nn.init.zeros_(upLinear.weight!);
        }
    }

    private static nn.Module<Tensor, Tensor> Activation(string name) => name switch
    {
        "relu" => nn.ReLU(),
        "swish" or "silu" => nn.SiLU(),
        "gelu" => nn.GELU(),
        _ => nn.Tanh(),
    };
}
