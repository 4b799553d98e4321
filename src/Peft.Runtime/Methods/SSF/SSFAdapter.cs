using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// An SSF adapter: <c>ssf_scale</c> γ and <c>ssf_shift</c> β, <c>[out]</c>, that give the layer's output <c>γ ⊙ y + β</c>
/// (<see cref="IFeatureAffineAdapter"/>: the last stage of a linear layer; folded into a LayerNorm's affine parameters).
/// γ ~ N(1, 0.02²), β ~ N(0, 0.02²) from torch's generator, as the paper's code (not identity at init). Merge:
/// <c>W' = diag(γ) W</c> (a norm: <c>γ ⊙ w</c>), <c>b' = γ ⊙ b + β</c>; unmerge divides (exact to a rounding per entry).
/// Both are refused on a layer without a bias (nowhere to put β) and where γ has an exact zero (the merge would erase rows).
/// </summary>
public sealed class SSFAdapter : PeftAdapter, IFeatureAffineAdapter
{
    /// <summary>The scale's name, also the file's tensor name.</summary>
    internal const string ScaleName = "ssf_scale";

    /// <summary>The shift's name, also the file's tensor name.</summary>
    internal const string ShiftName = "ssf_shift";

    private Parameter _scale;
    private Parameter _shift;

    /// <summary>Creates the adapter with γ ~ N(1, 0.02²) and β ~ N(0, 0.02²).</summary>
    /// <param name="adapterName">The adapter name.</param>
    /// <param name="layer">The layer (a linear layer or a norm).</param>
    /// <param name="options">The options.</param>
    /// <exception cref="PeftConfigurationException">The name is invalid or the layer is of another kind.</exception>
    public SSFAdapter(string adapterName, PeftLayerInfo layer, SSFOptions options)
        : base(adapterName, layer)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate(adapterName, layer);
        Options = options;
        _scale = CreateParameter(ScaleName, layer.OutFeatures);
        _shift = CreateParameter(ShiftName, layer.OutFeatures);
        using (no_grad())
        {
            nn.init.normal_(_scale, 1.0, SSFOptions.InitStd);
            nn.init.normal_(_shift, 0.0, SSFOptions.InitStd);
        }

        TrackDevice(_scale);
    }

    /// <summary>The options the adapter was created with.</summary>
    public SSFOptions Options { get; }

    /// <inheritdoc />
    public override PeftAdapterOptions Config => Options;

    /// <summary>γ <c>[out]</c>.</summary>
    public Tensor Scale => _scale;

    /// <summary>β <c>[out]</c>.</summary>
    public Tensor Shift => _shift;

    /// <summary><c>W ← diag(γ) W</c> (a norm's <c>w ← γ ⊙ w</c>), <c>b ← γ ⊙ b + β</c>.</summary>
    /// <param name="target">The layer's parameters.</param>
    /// <exception cref="PeftConfigurationException">The layer has no bias, or γ has an exact zero; nothing changed.</exception>
    public void MergeInto(LayerParameters target)
    {
        var bias = CheckMergeable(target, "merged");
        using (var rows = Rows(target.Weight))
        {
            target.Weight.mul_(rows);
        }

        bias.mul_(_scale).add_(_shift);
    }

    /// <summary><c>W ← diag(1/γ) W</c>, <c>b ← (b − β) / γ</c> (exact to a rounding per entry).</summary>
    /// <param name="target">The merged parameters.</param>
    /// <exception cref="PeftConfigurationException">The layer has no bias, or γ has an exact zero.</exception>
    public void UnmergeFrom(LayerParameters target)
    {
        var bias = CheckMergeable(target, "unmerged");
        using (var rows = Rows(target.Weight))
        {
            target.Weight.div_(rows);
        }

        bias.sub_(_shift).div_(_scale);
    }

    /// <inheritdoc />
    public override IEnumerable<(string PeftName, Parameter Parameter)> PeftTensors()
    {
        yield return (ScaleName, _scale);
        yield return (ShiftName, _shift);
    }

    /// <summary>Moves or converts the adapter, then refreshes the cached parameters.</summary>
    /// <param name="dtype">The target element type, if converting.</param>
    /// <param name="device">The target device, if moving.</param>
    /// <param name="non_blocking">Whether to copy asynchronously where possible.</param>
    protected override void _toEpilog(ScalarType? dtype, Device? device, bool non_blocking)
    {
        base._toEpilog(dtype, device, non_blocking);
        _scale = RegisteredParameter(ScaleName)!;
        _shift = RegisteredParameter(ShiftName)!;
    }

    /// <summary>γ as a column <c>[out, 1]</c> for a 2-D weight (its rows), or as is for a norm's 1-D weight.</summary>
    private Tensor Rows(Tensor weight) => weight.Dimensions == 2 ? _scale.unsqueeze(1) : _scale.alias();

    private Tensor CheckMergeable(LayerParameters target, string what)
    {
        ArgumentNullException.ThrowIfNull(target);
        if (target.Bias is null)
        {
            throw new PeftConfigurationException(
                $"SSF adapter '{AdapterName}'{Layer.Where} cannot be {what}: the layer has no bias to hold the shift (b' = γ ⊙ b + β). " +
                "Keep the adapter unmerged (it works as is), or build the layer with a bias (nn.Linear(in, out, hasBias: true), initialised to zeros) before training.",
                MemberName, AdapterName);
        }

        using var zero = _scale.eq(0).any();
        if (zero.item<bool>())
        {
            throw new PeftConfigurationException(
                $"SSF adapter '{AdapterName}'{Layer.Where} cannot be {what}: its scale has an exact zero, so merging would erase weight rows for good. Keep it unmerged.",
                MemberName, AdapterName);
        }

        return target.Bias;
    }
}
