using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// A SoKA adapter (<see cref="SoKAAttribute"/>): r trainable Kronecker pairs <c>soka_w1</c> <c>[r, m, n]</c> and <c>soka_w2</c>
/// <c>[r, p, q]</c>, <c>ΔW = Σ_k w1_k ⊗ w2_k</c> (<c>[m·p, n·q]</c> = <c>[out, in]</c>), added to the residual base.
/// </summary>
/// <remarks>
/// <para>Initialisation (when the adapter joins its layer, <see cref="IBaseRewritingAdapter"/>): the Kronecker-product SVD
/// (Van Loan–Pitsianis) of the weight in float32 (float64 for a float64 layer): the blocks <c>W_ij</c> <c>[p, q]</c> become the rows
/// <c>vec(W_ij)ᵀ</c> of <c>R(W)</c> <c>[m·n, p·q]</c>, <c>R = Σ σ_k u_k v_kᵀ</c>, and <c>w1_k = √σ_k·u_k</c> as <c>[m, n]</c>,
/// <c>w2_k = √σ_k·v_k</c> as <c>[p, q]</c> for the top r (r = the declared rank, or <see cref="SoKARules.AutomaticRank"/>); the
/// base keeps <c>W − Σ_{k≤r} w1_k ⊗ w2_k</c>, so the layer starts equal to the original.</para>
/// <para>Forward through the base product (<see cref="IWeightRewritingAdapter"/>): the layer runs one product with
/// <c>W + ΔW</c>, so a step costs the base's products plus forming <c>ΔW</c> (r·out·in) and its gradient <c>gᵀx</c>. The sum of
/// r Kronecker products is full rank, so the alternative, the vec trick (<c>x</c> as <c>X [n, q]</c>,
/// <c>y += vec(Σ_k w1_k X w2_kᵀ)</c>, <see cref="AddTo"/>), costs about a full-size product per row as well and keeps
/// <c>[N, r, n, p]</c> intermediates for the backward: measured 8.0x LoRA's step against this path's (docs/benchmarks.md).
/// Merging adds <c>ΔW</c> to the weight, as for an additive adapter.</para>
/// </remarks>
public sealed class SoKAAdapter : PeftAdapter, IWeightRewritingAdapter, IBaseRewritingAdapter
{
    private const string W1Name = "soka_w1";
    private const string W2Name = "soka_w2";

    private readonly SoKAOptions _declared;

    /// <summary>Creates a SoKA adapter; its values (and, with rank 0, its size) are set when it joins its layer.</summary>
    /// <param name="adapterName">The adapter name.</param>
    /// <param name="layer">The layer.</param>
    /// <param name="options">The options.</param>
    /// <exception cref="PeftConfigurationException">The name or options are invalid for the layer.</exception>
    public SoKAAdapter(string adapterName, PeftLayerInfo layer, SoKAOptions options)
        : base(adapterName, layer)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate(adapterName, layer);
        _declared = options;
        Options = options;
        (M, N, P, Q) = SoKARules.Shapes((int)layer.InFeatures, (int)layer.OutFeatures, options.Factor);
        var w1 = CreateParameter(W1Name, options.Rank, M, N);
        var w2 = CreateParameter(W2Name, options.Rank, P, Q);
        using (torch.no_grad())
        {
            w1.zero_();
            w2.zero_();
        }

        TrackDevice(w1);
    }

    /// <summary>The options, with the rank the initialisation chose (a declared rank 0 becomes the automatic rank).</summary>
    public SoKAOptions Options { get; private set; }

    /// <inheritdoc />
    public override PeftAdapterOptions Config => Options;

    /// <summary>The rank r (0 until the adapter was initialised when its rank is automatic).</summary>
    public int Rank => (int)W1.shape[0];

    /// <summary>The first factor's rows m (out = m·p).</summary>
    public int M { get; }

    /// <summary>The first factor's columns n (in = n·q).</summary>
    public int N { get; }

    /// <summary>The second factor's rows p.</summary>
    public int P { get; }

    /// <summary>The second factor's columns q.</summary>
    public int Q { get; }

    /// <summary>The first factors <c>[r, m, n]</c> (<c>soka_w1</c>).</summary>
    public Parameter W1 => RegisteredParameter(W1Name)!;

    /// <summary>The second factors <c>[r, p, q]</c> (<c>soka_w2</c>).</summary>
    public Parameter W2 => RegisteredParameter(W2Name)!;

    /// <summary>The singular values of the weight's rearrangement <c>R(W)</c> found at initialisation, descending (empty before).</summary>
    public IReadOnlyList<double> KroneckerSpectrum { get; private set; } = Array.Empty<double>();

    /// <inheritdoc />
    public bool RewritesBase => true;

    /// <inheritdoc />
    public string BaseRewriteName => "SoKA, the top Kronecker components of the weight moved into the adapter";

    /// <summary>The rearrangement <c>R(W)</c> <c>[m·n, p·q]</c>: row <c>(i, j)</c> is <c>vec(W_ij)ᵀ</c> of the block
    /// <c>W[i·p:(i+1)·p, j·q:(j+1)·q]</c>.</summary>
    /// <param name="weight">The weight <c>[m·p, n·q]</c>.</param>
    /// <param name="m">m.</param>
    /// <param name="n">n.</param>
    /// <param name="p">p.</param>
    /// <param name="q">q.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor Rearrange(Tensor weight, int m, int n, int p, int q)
    {
        ArgumentNullException.ThrowIfNull(weight);
        using var blocks = weight.reshape(m, p, n, q);
        using var moved = blocks.permute(0, 2, 1, 3);
        return moved.reshape(m * n, p * q);
    }

    /// <summary>Takes the Kronecker-product SVD of the base weight, sets the factors of the top r components (choosing r when
    /// declared 0) and leaves the residual in the weight (the layer calls it under no_grad).</summary>
    /// <param name="layer">The base parameters.</param>
    public void InitializeFromBase(LayerParameters layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        using var scope = NewDisposeScope();
        var weight = layer.Weight;
        var compute = weight.dtype == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;
        var w = weight.to(compute);
        var r = Rearrange(w, M, N, P, Q);
        var (u, s, vh) = linalg.svd(r, fullMatrices: false);
        KroneckerSpectrum = s.to(ScalarType.Float64).cpu().data<double>().ToArray();
        int rank = _declared.RankAutomatic ? SoKARules.AutomaticRank(KroneckerSpectrum, _declared.EnergyThreshold) : _declared.Rank;
        var root = s.narrow(0, 0, rank).sqrt();
        var w1 = (u.narrow(1, 0, rank) * root.unsqueeze(0)).t().reshape(rank, M, N);
        var w2 = (vh.narrow(0, 0, rank) * root.unsqueeze(1)).reshape(rank, P, Q);
        if (rank != Rank)
        {
            ReplaceParameter(W1Name, w1);
            ReplaceParameter(W2Name, w2);
        }
        else
        {
            W1.copy_(w1);
            W2.copy_(w2);
        }

        var part = Kronecker(w1, w2);
        weight.copy_(w.sub(part));
        Options = _declared with { Rank = rank, EnergyThreshold = SoKARules.DefaultEnergyThreshold };
    }

    /// <summary>Adds <c>vec(Σ_k w1_k X w2_kᵀ)</c> to <paramref name="output"/> in place, X the input row as <c>[n, q]</c>.</summary>
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

        long rows = input.shape[0];
        using var x = input.reshape(rows, 1, N, Q);               // [N, 1, n, q]
        using var w2t = W2.transpose(1, 2);                        // [r, q, p]
        using var right = x.matmul(w2t);                           // [N, r, n, p]
        using var both = W1.matmul(right);                         // [N, r, m, p]
        using var summed = both.sum(dim: 1, keepdim: false);       // [N, m, p]
        using var flat = summed.reshape(rows, OutFeatures);
        output.add_(flat);
    }

    /// <summary><c>Σ_k w1_k ⊗ w2_k</c> <c>[out, in]</c>; the caller disposes it.</summary>
    /// <returns>A new tensor.</returns>
    public Tensor DeltaWeight() => Kronecker(W1, W2);

    /// <inheritdoc />
    public bool SharesBaseProduct => true;

    /// <inheritdoc />
    public Tensor EffectiveWeight(Tensor weight)
    {
        ArgumentNullException.ThrowIfNull(weight);
        using var delta = DeltaWeight();
        return weight + delta.to(weight.dtype);
    }

    /// <inheritdoc />
    public void AddSeparately(Tensor input, Tensor output, Tensor weight) => AddTo(input, output);

    /// <inheritdoc />
    public void MergeInto(LayerParameters target)
    {
        ArgumentNullException.ThrowIfNull(target);
        using var delta = DeltaWeight();
        target.Weight.add_(delta);
    }

    /// <inheritdoc />
    public void UnmergeFrom(LayerParameters target)
    {
        ArgumentNullException.ThrowIfNull(target);
        using var delta = DeltaWeight();
        target.Weight.sub_(delta);
    }

    /// <inheritdoc />
    public override IEnumerable<(string PeftName, Parameter Parameter)> PeftTensors()
    {
        yield return (W1Name, W1);
        yield return (W2Name, W2);
    }

    private static Tensor Kronecker(Tensor w1, Tensor w2)
    {
        long m = w1.shape[1], n = w1.shape[2], p = w2.shape[1], q = w2.shape[2];
        using var terms = torch.einsum("kmn,kpq->mpnq", w1, w2);
        return terms.reshape(m * p, n * q);
    }
}
