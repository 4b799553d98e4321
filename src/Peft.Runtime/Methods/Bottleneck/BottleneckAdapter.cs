using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// One bottleneck adapter at a block's sub-layer, laid out as the adapters library's <c>Adapter</c> module so its keys read
/// the same: <c>adapter_down</c> = [Linear(in → r), activation] (<c>adapter_down.0.weight</c>/<c>.bias</c>) and
/// <c>adapter_up</c> = Linear(r → out). Series: <c>h ← h + s·up(σ(down(h)))</c> on the sub-layer output; parallel:
/// <c>h ← h + s·up(σ(down(x)))</c> from the sub-layer input (<see cref="BottleneckConfig"/>). Not mergeable.
/// </summary>
public sealed class BottleneckAdapter : SublayerAdapter
{
    private readonly Sequential adapter_down;
    private readonly Linear adapter_up;

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
        adapter_down = nn.Sequential(("0", nn.Linear(inputFeatures, r)), ("1", Activation(config.NonLinearity)));
        adapter_up = nn.Linear(r, outputFeatures);
        register_module(nameof(adapter_down), adapter_down);
        register_module(nameof(adapter_up), adapter_up);
        Initialize();
    }

    /// <summary>The configuration.</summary>
    public BottleneckConfig Config { get; }

    /// <summary>The bottleneck width <c>r</c>.</summary>
    public long Bottleneck { get; }

    /// <summary>The down projection (<c>adapter_down.0</c>).</summary>
    public Linear Down => (Linear)adapter_down[0];

    /// <summary>The up projection (<c>adapter_up</c>).</summary>
    public Linear Up => adapter_up;

    /// <inheritdoc />
    public override Tensor Apply(Tensor input, Tensor output)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(output);
        using var scope = NewDisposeScope();
        var source = Config.IsParallel ? input : output;
        var up = adapter_up.call(adapter_down.call(source.to_type(adapter_up.weight.dtype)));
        if (Config.Scaling != 1.0) up = up * Config.Scaling;
        return (output + up.to_type(output.dtype)).MoveToOuterDisposeScope();
    }

    private void Initialize()
    {
        using var _ = no_grad();
        var down = Down;
        nn.init.zeros_(down.bias!);
        nn.init.zeros_(adapter_up.bias!);
        if (Config.InitWeights == BottleneckConfig.BertInit)
        {
            nn.init.normal_(down.weight!, 0.0, 0.02);
            nn.init.normal_(adapter_up.weight!, 0.0, 0.02);
        }
        else
        {
            // mam_adapter: the down projection keeps nn.Linear's kaiming_uniform(a = sqrt 5), the up projection is zero.
            nn.init.zeros_(adapter_up.weight!);
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
