using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Peft;

/// <summary>
/// An SVFit adapter (<see cref="SVFitAttribute"/>): trainable singular values <c>σ</c> <c>[r]</c> (<c>svfit_sigma</c>) over the
/// frozen top-r singular vectors of the base weight, <c>U_r</c> <c>[out, r]</c> (<c>svfit_U</c>) and <c>V_rᵀ</c> <c>[r, in]</c>
/// (<c>svfit_Vh</c>, torch's <c>Vh</c>). An additive adapter on the residual base: <c>ΔW = U_r diag(σ) V_rᵀ</c>.
/// </summary>
/// <remarks>
/// <para>Initialisation (when the adapter joins its layer, <see cref="IBaseRewritingAdapter"/>): <c>W = U S Vᵀ</c> (float32, float64
/// for a float64 layer), r = the declared rank or the smallest rank holding <see cref="SVFitOptions.EnergyThreshold"/> of Σσ²,
/// <c>σ = S[:r]</c>, and the base keeps <c>W_res = W − U_r diag(σ₀) V_rᵀ</c>, so the layer starts equal to the original.</para>
/// <para>Forward: <c>y += ((x V_r) ⊙ σ) U_rᵀ</c>, two r-wide products; the <c>out × in</c> update is never formed.</para>
/// <para>The singular vectors are <see cref="PeftAdapter.FrozenParameters"/>: never trained, but saved, because another SVD of
/// the same weight may differ in rounding and in the signs of its vectors.</para>
/// </remarks>
public sealed class SVFitAdapter : PeftAdapter, IAdditiveAdapter, IBaseRewritingAdapter
{
    private const string SigmaName = "svfit_sigma";
    private const string UName = "svfit_U";
    private const string VhName = "svfit_Vh";

    private readonly SVFitOptions _declared;

    /// <summary>Creates an SVFit adapter; its values (and, with rank 0, its size) are set when it joins its layer.</summary>
    /// <param name="adapterName">The adapter name.</param>
    /// <param name="layer">The layer.</param>
    /// <param name="options">The options.</param>
    /// <exception cref="PeftConfigurationException">The name or options are invalid for the layer.</exception>
    public SVFitAdapter(string adapterName, PeftLayerInfo layer, SVFitOptions options)
        : base(adapterName, layer)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate(adapterName, layer);
        _declared = options;
        Options = options;
        long r = options.Rank;
        var sigma = CreateParameter(SigmaName, r);
        var u = CreateParameter(UName, layer.OutFeatures, r);
        var vh = CreateParameter(VhName, r, layer.InFeatures);
        using (torch.no_grad())
        {
            sigma.zero_();
            u.zero_();
            vh.zero_();
        }

        u.requires_grad = false;
        vh.requires_grad = false;

        TrackDevice(sigma);
    }

    /// <summary>The options, with the rank the initialisation chose (a declared rank 0 becomes the energy rule's rank).</summary>
    public SVFitOptions Options { get; private set; }

    /// <inheritdoc />
    public override PeftAdapterOptions Config => Options;

    /// <summary>The rank r (0 until the adapter was initialised when its rank is chosen by energy).</summary>
    public int Rank => (int)Sigma.shape[0];

    /// <summary>The trainable singular values σ <c>[r]</c> (<c>svfit_sigma</c>).</summary>
    public Parameter Sigma => RegisteredParameter(SigmaName)!;

    /// <summary>The frozen left singular vectors <c>U_r</c> <c>[out, r]</c> (<c>svfit_U</c>).</summary>
    public Parameter U => RegisteredParameter(UName)!;

    /// <summary>The frozen right singular vectors, transposed: <c>V_rᵀ</c> <c>[r, in]</c> (<c>svfit_Vh</c>).</summary>
    public Parameter Vh => RegisteredParameter(VhName)!;

    /// <inheritdoc />
    public bool RewritesBase => true;

    /// <inheritdoc />
    public string BaseRewriteName => "SVFit";

    /// <summary>Takes the SVD of the base weight, sets σ, U_r and V_rᵀ (choosing r by energy when declared 0) and leaves the
    /// residual <c>W − U_r diag(σ₀) V_rᵀ</c> in the weight (the layer calls it under no_grad).</summary>
    /// <param name="layer">The base parameters.</param>
    public void InitializeFromBase(LayerParameters layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        using var scope = NewDisposeScope();
        var weight = layer.Weight;
        var compute = weight.dtype == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;
        var w = weight.to(compute);
        var (u, s, vh) = linalg.svd(w, fullMatrices: false);
        int r = _declared.RankByEnergy
            ? SVFitRules.EnergyRank(s.to(ScalarType.Float64).cpu().data<double>().ToArray(), _declared.EnergyThreshold)
            : _declared.Rank;
        var sr = s.narrow(0, 0, r);
        var ur = u.narrow(1, 0, r);
        var vhr = vh.narrow(0, 0, r);
        if (r != Rank)
        {
            ReplaceParameter(SigmaName, sr);
            ReplaceParameter(UName, ur);
            ReplaceParameter(VhName, vhr);
        }
        else
        {
            Sigma.copy_(sr);
            U.copy_(ur);
            Vh.copy_(vhr);
        }

        var part = (ur * sr.unsqueeze(0)).matmul(vhr);
        weight.copy_(w.sub(part));
        Options = _declared with { Rank = r, EnergyThreshold = SVFitRules.DefaultEnergyThreshold };
    }

    /// <summary>Adds <c>((x V_r) ⊙ σ) U_rᵀ</c> to <paramref name="output"/> in place.</summary>
    /// <param name="input">The layer input <c>[..., in]</c>.</param>
    /// <param name="output">The layer output <c>[..., out]</c>, updated in place.</param>
    public void AddTo(Tensor input, Tensor output)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(output);
        if (input.Dimensions != 2 || output.Dimensions != 2)
        {
            using var x2 = input.reshape(-1, InFeatures);
            using var y2 = output.view(-1, OutFeatures);
            AddTo(x2, y2);
            return;
        }

        using var h = F.linear(input, Vh);      // x V_r: [N, r]
        using var scaled = h * Sigma;            // ⊙ σ
        using var ut = U.t();
        output.addmm_(scaled, ut);
    }

    /// <summary><c>U_r diag(σ) V_rᵀ</c> <c>[out, in]</c>; the caller disposes it.</summary>
    /// <returns>A new tensor.</returns>
    public Tensor DeltaWeight()
    {
        using var sigma = Sigma.unsqueeze(0);
        using var left = U * sigma;
        return left.matmul(Vh);
    }

    /// <summary>The singular vectors <c>svfit_U</c> and <c>svfit_Vh</c>.</summary>
    /// <returns>The frozen parameters.</returns>
    public override IEnumerable<Parameter> FrozenParameters()
    {
        yield return U;
        yield return Vh;
    }

    /// <inheritdoc />
    public override IEnumerable<(string PeftName, Parameter Parameter)> PeftTensors()
    {
        yield return (SigmaName, Sigma);
        yield return (UName, U);
        yield return (VhName, Vh);
    }
}
