using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// An (IA)³ adapter as in Hugging Face PEFT (<c>ia3/layer.py</c>): one learned vector <c>ia3_l</c>, <c>[out, 1]</c> scaling the
/// layer's output (bias included) or <c>[1, in]</c> scaling its input (a feed-forward layer). Several active (IA)³ adapters
/// multiply. Merging multiplies the weight's rows and the bias (output scaling) or the weight's columns (input scaling);
/// unmerging divides by <c>l + 1e-8</c>, as PEFT does, so it is exact only up to that epsilon.
/// </summary>
public sealed class IA3Adapter : PeftAdapter, IScalingAdapter, IMergeableAdapter
{
    /// <summary>The parameter's name (and PEFT's saved tensor name).</summary>
    internal const string ScaleName = "ia3_l";

    /// <summary>PEFT's epsilon in the unmerge division.</summary>
    private const double UnmergeEpsilon = 1e-8;

    private Parameter _l;

    /// <summary>Creates an (IA)³ adapter with <c>l</c> = ones (or standard normal with <see cref="IA3Options.InitWeights"/> false).</summary>
    /// <param name="adapterName">The adapter name.</param>
    /// <param name="layer">The layer.</param>
    /// <param name="options">The options.</param>
    /// <exception cref="PeftConfigurationException">The name or options are invalid.</exception>
    public IA3Adapter(string adapterName, PeftLayerInfo layer, IA3Options options)
        : base(adapterName, layer)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate(adapterName, layer);
        Options = options;
        _l = options.FeedForward ? CreateParameter(ScaleName, 1, layer.InFeatures) : CreateParameter(ScaleName, layer.OutFeatures, 1);
        using (no_grad())
        {
            if (options.InitWeights)
            {
                nn.init.ones_(_l);
            }
            else
            {
                nn.init.normal_(_l);
            }
        }

        TrackDevice(_l);
    }

    /// <summary>The options the adapter was created with.</summary>
    public IA3Options Options { get; }

    /// <inheritdoc />
    public override PeftAdapterOptions Config => Options;

    /// <summary>True for a feed-forward layer (the input is scaled).</summary>
    public bool ScalesInput => Options.FeedForward;

    /// <summary>The learned vector <c>ia3_l</c>: <c>[1, in]</c> for a feed-forward layer, else <c>[out, 1]</c> (PEFT's shapes).</summary>
    public Parameter L => _l;

    /// <inheritdoc />
    public Tensor Scale() => _l.flatten();

    /// <summary><c>W ← W ⊙ l</c> (rows with the bias, or columns), as PEFT's merge.</summary>
    /// <param name="target">The base parameters.</param>
    public void MergeInto(LayerParameters target)
    {
        ArgumentNullException.ThrowIfNull(target);
        target.Weight.mul_(_l);
        if (!ScalesInput && target.Bias is not null)
        {
            using var flat = _l.flatten();
            target.Bias.mul_(flat);
        }
    }

    /// <summary><c>W ← W / (l + 1e-8)</c> (and the bias for output scaling), as PEFT's unmerge.</summary>
    /// <param name="target">The merged parameters.</param>
    public void UnmergeFrom(LayerParameters target)
    {
        ArgumentNullException.ThrowIfNull(target);
        using var divisor = _l + UnmergeEpsilon;
        target.Weight.div_(divisor);
        if (!ScalesInput && target.Bias is not null)
        {
            using var flat = divisor.flatten();
            target.Bias.div_(flat);
        }
    }

    /// <inheritdoc />
    public override IEnumerable<(string PeftName, Parameter Parameter)> PeftTensors()
    {
        yield return (ScaleName, _l);
    }

    /// <summary>Moves or converts the adapter, then refreshes the cached parameter.</summary>
    /// <param name="dtype">The target element type, if converting.</param>
    /// <param name="device">The target device, if moving.</param>
    /// <param name="non_blocking">Whether to copy asynchronously where possible.</param>
    protected override void _toEpilog(ScalarType? dtype, Device? device, bool non_blocking)
    {
        base._toEpilog(dtype, device, non_blocking);
        _l = RegisteredParameter(ScaleName)!;
    }
}
