using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft;

public sealed partial class AdaptedLinear
{
    private Parameter? _sharedWeight;

    /// <summary>The sibling group this layer runs in (<see cref="SiblingProjectionExtensions.FuseSiblingProjections"/>), or null.</summary>
    public SiblingProjectionGroup? Siblings { get; internal set; }

    /// <summary>Whether this layer's forward can be a share of its group's one product now: a dense frozen base, and no live
    /// adapter or exactly one low-rank one (LoRA, or DoRA sharing the base product: its row scale then multiplies this
    /// layer's columns of the product). Anything else runs the layer alone, which computes the same function.</summary>
    internal bool CanShareProduct(out ILowRankFactors? lowRank)
    {
        lowRank = null;
        if (_quantized is not null || InputObserver is not null || _weight.requires_grad)
        {
            return false;
        }

        EnsureUnmergedWhenDisabled();
        var plan = _plan;
        if (plan is null)
        {
            return true;
        }

        if (plan.Fused is { FactorsReady: true } fused && fused is not IRowRescalingAdapter { SharesBaseProduct: false })
        {
            lowRank = fused;
            return true;
        }

        return false;
    }

    /// <summary>Whether the layer's weight is still the view of the group's buffer installed by
    /// <see cref="ShareWeightStorage"/> (a device move, a dtype conversion or a quantization replaces it).</summary>
    internal bool WeightIsShared => _sharedWeight is not null && ReferenceEquals(_weight, _sharedWeight);

    /// <summary>Makes the layer's weight a view of <paramref name="rows"/> (its rows of the group's concatenated buffer), so that
    /// every in-place write to the weight (merge, unmerge, a checkpoint load) is seen by the group's product. Only frozen
    /// weights are re-pointed: an optimizer may hold a trained one.</summary>
    internal void ShareWeightStorage(Tensor rows)
    {
        var shared = new Parameter(rows, requires_grad: false);
        _internal_params[WeightName] = shared;
        _weight = shared;
        _sharedWeight = shared;
    }

    internal bool IsQuantized => _quantized is not null;

    private Tensor? TakeSiblingShare(Tensor input) => Siblings?.RunOrTake(this, input);
}
