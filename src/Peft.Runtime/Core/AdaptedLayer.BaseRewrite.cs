using TorchSharp;
using static TorchSharp.torch;

namespace Peft;

/// <summary>Adapters that rewrite the base weight at initialisation (<see cref="IBaseRewritingAdapter"/>: PiSSA, OLoRA): the
/// layer runs their initialisation, remembers a fingerprint of the residual they leave, and refuses to go on with a base
/// weight that was replaced since (docs/ARCHITECTURE.md, "Adapters that rewrite the base").</summary>
public abstract partial class AdaptedLayer
{
    private BaseFingerprint? _residual;
    private BaseFingerprint? _original;

    /// <summary>True while an adapter on this layer has rewritten its base weight (the base holds a residual).</summary>
    public bool HoldsResidualBase => _adapters.Any(RewritesBase);

    /// <summary>Fingerprints of the weight before the first base-rewriting adapter took its part and of the residual it
    /// left (what adapter files record, <c>peft_base_rewrite</c>); null when the base holds no residual.</summary>
    public (BaseFingerprint Original, BaseFingerprint Residual)? ResidualFingerprints
        => _residual is { } residual && _original is { } original ? (original, residual) : null;

    /// <summary>
    /// Runs the base-dependent initialisation of every adapter on this layer again (<see cref="IBaseInitializedAdapter"/>, in
    /// the order they were added) on the current base parameters: what to call after loading a base checkpoint into a model
    /// whose adapters were created before it (their initial values were taken from the old weights). An adapter that rewrites
    /// the base takes the current weight as the original weight and leaves its residual again.
    /// </summary>
    /// <exception cref="PeftConfigurationException">An adapter is merged, or the base still holds the residual an adapter left
    /// (re-initialising would take the adapter's part out of the weight a second time).</exception>
    public void ReinitializeFromBase()
    {
        if (IsMerged)
        {
            throw new PeftConfigurationException(
                $"Member '{MemberName}' has merged adapters ({string.Join(", ", MergedAdapters)}); unmerge them before re-initialising adapters from the base weight.",
                MemberName, null);
        }

        if (_residual is { } residual && residual.Matches(CurrentBaseFingerprint()))
        {
            var rewriter = _adapters.First(RewritesBase);
            throw new PeftConfigurationException(
                $"Member '{MemberName}' still holds the residual base weight that adapter '{rewriter.AdapterName}' ({Describe(rewriter)}) left; " +
                "re-initialising would take its part out of the weight a second time. Load the original base weights first, then re-initialise.",
                MemberName, rewriter.AdapterName);
        }

        _original = HoldsResidualBase ? BaseFingerprint.Of(Weight) : null;
        using (torch.no_grad())
        {
            foreach (var adapter in _adapters)
            {
                if (adapter is IBaseInitializedAdapter fromBase)
                {
                    fromBase.InitializeFromBase(new LayerParameters(Weight, Bias));
                }
            }
        }

        _residual = HoldsResidualBase ? BaseFingerprint.Of(Weight) : null;
    }

    /// <summary>
    /// Runs the base-dependent initialisation of one adapter already on this layer, as when it was added: for an initialisation
    /// that needs data the weight alone does not give (CorDA's calibration, <see cref="PeftAdapterOptions.NeedsCalibration"/>),
    /// the calibration step hands the adapter its statistics, then calls this. An adapter that now rewrites the base takes its
    /// part out of the current weight (the original weight is remembered if no other adapter rewrote it) and its residual is
    /// recorded, exactly as for PiSSA at <see cref="WithAdapter"/>.
    /// </summary>
    /// <param name="adapterName">The adapter.</param>
    /// <exception cref="KeyNotFoundException">No adapter of that name is on this layer.</exception>
    /// <exception cref="PeftConfigurationException">Something is merged, or the base is not the residual the layer's other
    /// base-rewriting adapters left.</exception>
    public void InitializeAdapterFromBase(string adapterName)
    {
        ArgumentException.ThrowIfNullOrEmpty(adapterName);
        var adapter = _adapters.FirstOrDefault(a => a.AdapterName == adapterName)
            ?? throw new KeyNotFoundException($"Member '{MemberName}' has no adapter '{adapterName}'.");
        InitializeAdded(adapter);
    }

    /// <summary>
    /// Checks that the base weight is still the residual that this layer's base-rewriting adapters left (when nothing is
    /// merged); every model-level operation calls it. Free for layers without such an adapter.
    /// </summary>
    /// <exception cref="PeftConfigurationException">The base weight was replaced since (a base checkpoint loaded after the adapter
    /// was created): the adapter's part of the weight would count twice.</exception>
    public void EnsureResidualBase()
    {
        if (_residual is not { } residual || IsMerged || residual.Matches(CurrentBaseFingerprint()))
        {
            return;
        }

        var rewriter = _adapters.First(RewritesBase);
        throw new PeftConfigurationException(
            $"Member '{MemberName}': the base weight changed after adapter '{rewriter.AdapterName}' ({Describe(rewriter)}) replaced it by the residual W − s·B₀A₀ " +
            "(a base checkpoint loaded after the adapter was created?). With the original weight back in the base, the adapter's part would count twice. " +
            "Load base weights before adding the adapter, or call model.ReinitializeFromBase() after loading them to derive the residual again.",
            MemberName, rewriter.AdapterName);
    }

    /// <summary>Runs an added adapter's initialisation from the base (under no_grad); a base-rewriting one only while nothing is
    /// merged, and its residual is remembered.</summary>
    private void InitializeAdded(PeftAdapter adapter)
    {
        if (adapter is not IBaseInitializedAdapter fromBase)
        {
            return;
        }

        bool rewrites = RewritesBase(adapter);
        if (rewrites)
        {
            if (IsMerged)
            {
                throw new PeftConfigurationException(
                    $"Adapter '{adapter.AdapterName}' ({Describe(adapter)}) rewrites the base weight of member '{MemberName}', which holds merged adapters ({string.Join(", ", MergedAdapters)}): " +
                    "the residual would keep their updates. Unmerge them before adding it.",
                    MemberName, adapter.AdapterName);
            }

            EnsureResidualBase();
            _original ??= BaseFingerprint.Of(Weight);
            if (_residual is null) _original = BaseFingerprint.Of(Weight);
        }

        using (torch.no_grad())
        {
            fromBase.InitializeFromBase(new LayerParameters(Weight, Bias));
        }

        if (rewrites)
        {
            _residual = BaseFingerprint.Of(Weight);
        }
    }

    /// <summary>Forgets the residual once no adapter that rewrote the base remains (the base keeps the residual, as in PEFT).</summary>
    private void ForgetResidualIfNone()
    {
        if (!HoldsResidualBase)
        {
            _residual = null;
            _original = null;
        }
    }

    /// <summary>After a dtype conversion the base holds the same residual in another precision: fingerprint it again.</summary>
    /// <param name="dtype">The conversion's dtype, if any.</param>
    private protected void RefreshResidualAfterMove(ScalarType? dtype)
    {
        if (_residual is not null && dtype is not null)
        {
            _residual = CurrentBaseFingerprint();
        }
    }

    /// <summary>The fingerprint of the base weight as the forward uses it: the dense weight, or for a quantized base (a LoftQ
    /// residual stored by <see cref="AdaptedLinear.QuantizeBase"/>) its dequantized value.</summary>
    /// <returns>The fingerprint.</returns>
    private protected virtual BaseFingerprint CurrentBaseFingerprint() => BaseFingerprint.Of(Weight);

    private static bool RewritesBase(PeftAdapter adapter) => adapter is IBaseRewritingAdapter { RewritesBase: true };

    private static string Describe(PeftAdapter adapter) => adapter is IBaseRewritingAdapter r ? r.BaseRewriteName : adapter.Method.Name;
}

/// <summary>A cheap fingerprint of a weight (its sum and sum of squares in float64), enough to tell a residual weight from the
/// original it came from or from another checkpoint's weight, robust to the rounding of a device move.</summary>
/// <param name="Sum">Σ w.</param>
/// <param name="SumOfSquares">Σ w².</param>
/// <param name="Count">The number of elements.</param>
public readonly record struct BaseFingerprint(double Sum, double SumOfSquares, long Count)
{
    /// <summary>The relative tolerance of <see cref="Matches(BaseFingerprint)"/>.</summary>
    public const double Tolerance = 1e-6;

    /// <summary>Fingerprints a weight.</summary>
    /// <param name="weight">The weight.</param>
    /// <returns>The fingerprint.</returns>
    public static BaseFingerprint Of(Tensor weight)
    {
        ArgumentNullException.ThrowIfNull(weight);
        using var noGrad = torch.no_grad();
        using var w = weight.to(ScalarType.Float64);
        using var sum = w.sum();
        using var squares = w.square();
        using var sumSq = squares.sum();
        return new BaseFingerprint(sum.item<double>(), sumSq.item<double>(), weight.numel());
    }

    /// <summary>Whether <paramref name="weight"/> has this fingerprint (within <see cref="Tolerance"/>).</summary>
    /// <param name="weight">The weight.</param>
    /// <returns>True when it matches.</returns>
    public bool Matches(Tensor weight) => Matches(Of(weight));

    /// <summary>Whether two fingerprints agree within <see cref="Tolerance"/> (the sum against the weight's overall scale).</summary>
    /// <param name="other">The other fingerprint.</param>
    /// <returns>True when they match.</returns>
    public bool Matches(BaseFingerprint other)
    {
        if (other.Count != Count) return false;
        double scale = Math.Max(SumOfSquares, other.SumOfSquares);
        return Math.Abs(SumOfSquares - other.SumOfSquares) <= Tolerance * scale + 1e-30
            && Math.Abs(Sum - other.Sum) <= Tolerance * Math.Sqrt(Count * scale) + 1e-30;
    }
}
