using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Peft;

/// <summary>
/// A LoLDU adapter (<see cref="LoLDUAttribute"/>): trainable diagonal <c>z</c> <c>[r]</c> (<c>loldu_z</c>) and scaling factor
/// <c>s</c> <c>[1]</c> (<c>loldu_scaling_factor</c>) over frozen LU factors of the base weight, <c>P L_r</c> <c>[out, r]</c>
/// (<c>loldu_L</c>: the unit lower factor's first r columns with the pivoting's row permutation applied) and <c>U_r</c>
/// <c>[r, in]</c> (<c>loldu_U</c>: the first r rows of the unit upper factor). An additive adapter on the residual base:
/// <c>ΔW = s·(P L_r) diag(z) U_r</c>.
/// </summary>
/// <remarks>
/// <para>Initialisation (when the adapter joins its layer, <see cref="IBaseRewritingAdapter"/>): the partial-pivoting LU factorisation (<c>torch.linalg.lu_factor_ex</c>) of
/// the weight (float32, float64 for a float64 layer), <c>W = P L U</c>; <c>D = diag(U)</c>, <c>U ← U / D</c>; z = <c>D_r</c>,
/// s = α / r; the base keeps <c>W_res = W − s·(P L_r) diag(z) U_r</c>, so the layer starts equal to the original. P is applied
/// once, as an index map on the rows of <c>L_r</c> (<see cref="LoLDURules.RowsOfPermutedL"/>, <c>index_select</c>), never as a
/// dense <c>out × out</c> matrix, and the stored factor is the permuted one, so the forward needs no permutation at all.
/// A pivot <c>|D_i|</c> at or below <c>max|D| · ε · max(out, in)</c> (the weight's rank is below r) is refused naming the member.</para>
/// <para>Forward: <c>y += ((x U_rᵀ) ⊙ (s·z)) (P L_r)ᵀ</c>, two r-wide products; the <c>out × in</c> update is never formed.</para>
/// </remarks>
public sealed class LoLDUAdapter : PeftAdapter, IAdditiveAdapter, IBaseRewritingAdapter
{
    private const string ZName = "loldu_z";
    private const string ScalingName = "loldu_scaling_factor";
    private const string LName = "loldu_L";
    private const string UName = "loldu_U";

    /// <summary>Creates a LoLDU adapter; its values are set when it joins its layer.</summary>
    /// <param name="adapterName">The adapter name.</param>
    /// <param name="layer">The layer.</param>
    /// <param name="options">The options.</param>
    /// <exception cref="PeftConfigurationException">The name or options are invalid for the layer.</exception>
    public LoLDUAdapter(string adapterName, PeftLayerInfo layer, LoLDUOptions options)
        : base(adapterName, layer)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate(adapterName, layer);
        Options = options;
        var z = CreateParameter(ZName, options.Rank);
        var s = CreateParameter(ScalingName, 1);
        var l = CreateParameter(LName, layer.OutFeatures, options.Rank);
        var u = CreateParameter(UName, options.Rank, layer.InFeatures);
        using (torch.no_grad())
        {
            z.zero_();
            s.fill_(options.Scaling);
            l.zero_();
            u.zero_();
        }

        l.requires_grad = false;
        u.requires_grad = false;

        TrackDevice(z);
    }

    /// <summary>The options the adapter was created with.</summary>
    public LoLDUOptions Options { get; }

    /// <inheritdoc />
    public override PeftAdapterOptions Config => Options;

    /// <summary>The trainable diagonal z <c>[r]</c> (<c>loldu_z</c>).</summary>
    public Parameter Z => RegisteredParameter(ZName)!;

    /// <summary>The trainable scaling factor s <c>[1]</c> (<c>loldu_scaling_factor</c>).</summary>
    public Parameter ScalingFactor => RegisteredParameter(ScalingName)!;

    /// <summary>The frozen, row-permuted unit lower factor <c>P L_r</c> <c>[out, r]</c> (<c>loldu_L</c>).</summary>
    public Parameter L => RegisteredParameter(LName)!;

    /// <summary>The frozen unit upper factor <c>U_r</c> <c>[r, in]</c> (<c>loldu_U</c>).</summary>
    public Parameter U => RegisteredParameter(UName)!;

    /// <inheritdoc />
    public bool RewritesBase => true;

    /// <inheritdoc />
    public string BaseRewriteName => "LoLDU";

    /// <summary>Takes the LU of the base weight, sets z, s, <c>P L_r</c> and <c>U_r</c> and leaves the residual in the weight (the
    /// layer calls it under no_grad).</summary>
    /// <param name="layer">The base parameters.</param>
    /// <exception cref="PeftConfigurationException">One of the first r pivots is (numerically) zero.</exception>
    public void InitializeFromBase(LayerParameters layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        using var scope = NewDisposeScope();
        var weight = layer.Weight;
        var compute = weight.dtype == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;
        var w = weight.to(compute);
        long rows = w.shape[0], columns = w.shape[1], k = Math.Min(rows, columns);
        int r = Options.Rank;
        // torch.lu with infos is linalg.lu_factor_ex: it does not throw on a zero pivot, which CheckPivots reports (only the
        // first r pivots matter; a weight of rank below min(in, out) is fine for a smaller r).
        var (lu, maybePivots, _) = torch.lu(w, pivot: true, get_infos: true);
        var pivots = maybePivots ?? throw new InvalidOperationException("torch.lu returned no pivots.");
        var d = lu.diagonal().narrow(0, 0, k);
        CheckPivots(d, r, Math.Max(rows, columns), compute);
        var dr = d.narrow(0, 0, r);
        var lower = lu.narrow(1, 0, r).tril(-1).add_(eye(rows, r, dtype: compute, device: w.device));   // L[:, :r], unit diagonal
        var upper = lu.narrow(0, 0, r).triu().div_(dr.unsqueeze(1));                    // U[:r] / D_r
        var map = LoLDURules.RowsOfPermutedL(pivots.to(ScalarType.Int64).cpu().data<long>().ToArray(), (int)rows);
        var permuted = lower.index_select(0, tensor(map, device: lower.device));         // P L_r
        double s = Options.Scaling;
        var part = (permuted * dr.mul(s).unsqueeze(0)).matmul(upper);
        Z.copy_(dr);
        ScalingFactor.fill_(s);
        L.copy_(permuted);
        U.copy_(upper);
        weight.copy_(w.sub(part));
    }

    /// <summary>Adds <c>((x U_rᵀ) ⊙ (s·z)) (P L_r)ᵀ</c> to <paramref name="output"/> in place.</summary>
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

        using var h = F.linear(input, U);        // x U_rᵀ: [N, r]
        using var diagonal = Z * ScalingFactor;   // s·z
        using var scaled = h * diagonal;
        using var lt = L.t();
        output.addmm_(scaled, lt);
    }

    /// <summary><c>s·(P L_r) diag(z) U_r</c> <c>[out, in]</c>; the caller disposes it.</summary>
    /// <returns>A new tensor.</returns>
    public Tensor DeltaWeight()
    {
        using var diagonal = Z * ScalingFactor;
        using var row = diagonal.unsqueeze(0);
        using var left = L * row;
        return left.matmul(U);
    }

    /// <summary>The triangular factors <c>loldu_L</c> and <c>loldu_U</c>.</summary>
    /// <returns>The frozen parameters.</returns>
    public override IEnumerable<Parameter> FrozenParameters()
    {
        yield return L;
        yield return U;
    }

    /// <inheritdoc />
    public override IEnumerable<(string PeftName, Parameter Parameter)> PeftTensors()
    {
        yield return (ZName, Z);
        yield return (ScalingName, ScalingFactor);
        yield return (LName, L);
        yield return (UName, U);
    }

    private void CheckPivots(Tensor d, int r, long size, ScalarType compute)
    {
        var magnitudes = d.abs().to(ScalarType.Float64).cpu().data<double>().ToArray();
        double largest = magnitudes.Length == 0 ? 0 : magnitudes.Max();
        double eps = compute == ScalarType.Float64 ? 2.220446049250313e-16 : 1.1920928955078125e-7;
        double tolerance = largest * eps * size;
        for (int i = 0; i < r; i++)
        {
            if (magnitudes[i] <= tolerance)
            {
                throw new PeftConfigurationException(
                    $"LoLDU adapter '{AdapterName}'{Layer.Where}: pivot {i} of the weight's LU is {magnitudes[i]:G3} (largest {largest:G3}), numerically zero: the weight has rank below {r}, " +
                    $"so U_r cannot be normalised by D_r. Use a rank of at most {i}{(i == 0 ? " (the weight is zero: adapt another layer)" : string.Empty)}, or load the base weights before adding the adapter.",
                    MemberName, AdapterName);
            }
        }
    }
}
