using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// A KaSA adapter (<see cref="KaSAAttribute"/>) as PEFT's <c>KasaLinearVariant</c>: LoRA's <c>lora_A</c> <c>[r, in]</c> and
/// <c>lora_B</c> <c>[out, r]</c> with learned singular values <c>lora_diag</c> <c>d</c> <c>[r]</c> between them,
/// <c>Δ(x) = s · B(d ⊙ A(dropout(x)))</c>, merged as <c>W += s · B diag(d) A</c>.
/// </summary>
/// <remarks>
/// <para>Initialisation (when the adapter joins its layer, <see cref="IBaseRewritingAdapter"/>): the SVD of the weight (float32,
/// float64 for a float64 layer) and <c>W ← U[:, :k−r] diag(S[:k−r]) Vᵀ[:k−r]</c>, k = min(in, out): the r smallest directions
/// are dropped (destructive, as in PEFT: disabling or deleting the adapter leaves the truncated base, unmerge returns to it).
/// A is kaiming-uniform (a = √5), B zeros and d ~ N(0, 1), so the adapter adds nothing at the start.</para>
/// <para>Forward: <c>h = x Aᵀ</c> (r wide), <c>h ⊙ (s·d)</c>, then one <c>addmm_</c> with Bᵀ; the <c>out × in</c> update is never
/// formed. The loss term (<see cref="ILossTermAdapter"/>) is the paper's <c>β·Σd² + γ(‖BᵀB − I‖_F + ‖AAᵀ − I‖_F)</c>.</para>
/// </remarks>
public sealed class KaSAAdapter : PeftAdapter, IAdditiveAdapter, IBaseRewritingAdapter, ILossTermAdapter
{
    /// <summary>PEFT's name of the singular values (a ParameterDict entry: no <c>.weight</c> suffix in files).</summary>
    public const string DiagName = "lora_diag";

    private readonly LowRankPair _pair;

    /// <summary>Creates a KaSA adapter (A kaiming-uniform, B zeros, d ~ N(0, 1)); the base is truncated when it joins its layer.</summary>
    /// <param name="adapterName">The adapter name.</param>
    /// <param name="layer">The layer.</param>
    /// <param name="options">The options.</param>
    /// <exception cref="PeftConfigurationException">The name or options are invalid for the layer.</exception>
    public KaSAAdapter(string adapterName, PeftLayerInfo layer, KaSAOptions options)
        : base(adapterName, layer)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate(adapterName, layer);
        Options = options;
        _pair = new LowRankPair(this, layer, options.AsLoRA);
        var diag = CreateParameter(DiagName, options.Rank);
        using (torch.no_grad())
        {
            nn.init.normal_(diag, mean: 0.0, std: 1.0);
        }

        TrackDevice(_pair.A);
    }

    /// <summary>The options the adapter was created with.</summary>
    public KaSAOptions Options { get; }

    /// <inheritdoc />
    public override PeftAdapterOptions Config => Options;

    /// <summary>The rank r.</summary>
    public int Rank => Options.Rank;

    /// <summary>The scaling s (alpha / r or alpha / √r).</summary>
    public double Scaling => Options.Scaling;

    /// <summary>The down projection A <c>[r, in]</c> (<c>lora_A.weight</c>).</summary>
    public Parameter A => _pair.A;

    /// <summary>The up projection B <c>[out, r]</c> (<c>lora_B.weight</c>).</summary>
    public Parameter B => _pair.B;

    /// <summary>The learned singular values d <c>[r]</c> (<c>lora_diag</c>).</summary>
    public Parameter Diag => RegisteredParameter(DiagName)!;

    /// <inheritdoc />
    public bool RewritesBase => true;

    /// <inheritdoc />
    public string BaseRewriteName => "KaSA, the base truncated to its min(in, out) − r largest singular directions";

    /// <summary>Truncates the base weight to its <c>k − r</c> largest singular directions in place (the layer calls it under
    /// no_grad). A, B and d keep their values.</summary>
    /// <param name="layer">The base parameters.</param>
    public void InitializeFromBase(LayerParameters layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        using var scope = NewDisposeScope();
        var weight = layer.Weight;
        var compute = weight.dtype == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;
        var (u, s, vh) = linalg.svd(weight.to(compute), fullMatrices: false);
        long keep = s.shape[0] - Rank;
        var kept = (u.narrow(1, 0, keep) * s.narrow(0, 0, keep).unsqueeze(0)).matmul(vh.narrow(0, 0, keep));
        weight.copy_(kept);
    }

    /// <summary>Adds <c>s · ((dropout(x) Aᵀ) ⊙ d) Bᵀ</c> to <paramref name="output"/> in place.</summary>
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

        using var dropped = _pair.Dropout(input, training);
        using var h = nn.functional.linear(dropped ?? input, _pair.A);   // x Aᵀ: [N, r]
        using var scaledDiag = Diag * Scaling;                              // s·d: r values, in the layer's precision
        using var weighted = h * scaledDiag;
        using var bt = _pair.B.t();
        output.addmm_(weighted, bt);
    }

    /// <summary><c>s · B diag(d) A</c> <c>[out, in]</c>; the caller disposes it.</summary>
    /// <returns>A new tensor.</returns>
    public Tensor DeltaWeight()
    {
        using var scaledDiag = Diag * Scaling;
        using var left = _pair.B * scaledDiag.unsqueeze(0);
        return left.matmul(_pair.A);
    }

    /// <summary>The paper's regulariser <c>β·Σd² + γ(‖BᵀB − I_r‖_F + ‖AAᵀ − I_r‖_F)</c> (PEFT's
    /// <c>get_kasa_regularization_loss</c> for this layer), with β and γ from <see cref="Options"/>.</summary>
    /// <returns>A new scalar tensor.</returns>
    public Tensor LossTerm() => Regularization(Options.Beta, Options.Gamma);

    /// <summary><c>β·Σd² + γ(‖BᵀB − I_r‖_F + ‖AAᵀ − I_r‖_F)</c> with the given weights.</summary>
    /// <param name="beta">β.</param>
    /// <param name="gamma">γ.</param>
    /// <returns>A new scalar tensor.</returns>
    public Tensor Regularization(double beta, double gamma)
    {
        using var scope = NewDisposeScope();
        var a = _pair.A;
        var b = _pair.B;
        var eye = torch.eye(Rank, dtype: a.dtype, device: a.device);
        var btb = b.t().matmul(b) - eye;
        var aat = a.matmul(a.t()) - eye;
        var orthogonality = linalg.matrix_norm(btb) + linalg.matrix_norm(aat);
        var total = Diag.pow(2).sum() * beta + orthogonality * gamma;
        return total.MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public override IEnumerable<(string PeftName, Parameter Parameter)> PeftTensors()
    {
        yield return ("lora_A.weight", _pair.A);
        yield return ("lora_B.weight", _pair.B);
        yield return (DiagName, Diag);
    }
}
