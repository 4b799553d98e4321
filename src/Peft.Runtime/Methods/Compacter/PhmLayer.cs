using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft;

/// <summary>How a <see cref="PhmLayer"/> computes <c>x·H</c>.</summary>
public enum PhmPath
{
    /// <summary>Pick per call by the multiply-add count (<see cref="PhmLayer.FactoredIsCheaper"/>).</summary>
    Auto,

    /// <summary>Form <c>H = Σ_i A_i ⊗ W_left_i W_right_i</c> (<c>in × out</c>) and multiply once.</summary>
    Dense,

    /// <summary>Never form <c>H</c>: three products through the Kronecker factors.</summary>
    Factored,
}

/// <summary>
/// A parameterised hypercomplex multiplication layer (Compacter, Mahabadi et al.), laid out as the adapters library's
/// <c>PHMLayer</c> with its default factorisation: <c>y = x·H + b</c> (note <c>x·H</c>, not <c>Hᵀ</c>) with
/// <c>H = Σ_{i=1..n} A_i ⊗ W_i</c>, <c>W_i = W_left_i · W_right_i</c>. <c>W_left</c> is <c>[n, in/n, k]</c>,
/// <c>W_right</c> <c>[n, k, out/n]</c> (<c>k</c> = <c>phm_rank</c>, per layer, "fast"); the rule <c>A</c> <c>[n, n, n]</c>
/// (<c>phm_rule</c>, "slow") is one tensor shared by every PHM layer of the adapter (bound with <see cref="Bind"/>).
/// </summary>
/// <remarks>
/// The factored path computes, for <c>x</c> viewed as <c>[N, n, in/n]</c>: <c>T[p,i] = x_p·W_left_i</c> (one product),
/// <c>U[q,i] = Σ_p A_i[p,q]·T[p,i]</c>, <c>y_q = Σ_i U[q,i]·W_right_i</c> (one product): <c>N·n·k·(in + n² + out)</c>
/// multiply-adds against <c>N·in·out + n·in·out</c> for forming <c>H</c>. <see cref="PhmPath.Auto"/> takes the smaller
/// (benchmarks section 9 measures both).
/// </remarks>
public sealed class PhmLayer : nn.Module<Tensor, Tensor>
{
    /// <summary>The rule's name among the adapter's shared tensors (the adapters library's <c>phm_rule</c>).</summary>
    public const string RuleName = "phm_rule";

#pragma warning disable IDE1006 // the adapters library's parameter names
    private readonly Parameter W_left;
    private readonly Parameter W_right;
    private readonly Parameter b;
#pragma warning restore IDE1006
    private SharedAdapterTensors? _rule;

    /// <summary>Creates the layer with the adapters library's initialisation: each <c>W_left_i</c> and <c>W_right_i</c>
    /// xavier-normal (its hypercomplex_nonlinearity branch for the default "glorot-uniform"), <c>b</c> zero.</summary>
    /// <param name="inFeatures">Input width (divisible by <paramref name="phmDim"/>).</param>
    /// <param name="outFeatures">Output width (divisible by <paramref name="phmDim"/>).</param>
    /// <param name="phmDim">The number of Kronecker terms <c>n</c> (<c>phm_dim</c>).</param>
    /// <param name="phmRank">The rank <c>k</c> of each <c>W_i</c> (<c>phm_rank</c>).</param>
    /// <param name="where">Where the layer sits, for messages.</param>
    /// <exception cref="PeftConfigurationException">A width is not divisible by <paramref name="phmDim"/>.</exception>
    public PhmLayer(long inFeatures, long outFeatures, int phmDim, int phmRank, string where) : base(nameof(PhmLayer))
    {
        foreach (var (width, what) in new[] { (inFeatures, "input"), (outFeatures, "output") })
        {
            if (width % phmDim != 0)
            {
                throw new PeftConfigurationException(
                    $"Compacter PHM layer at {where}: phm_dim = {phmDim} does not divide its {width}-wide {what}; choose a phm_dim that divides " +
                    $"{inFeatures} and {outFeatures} (or a reduction_factor whose bottleneck it divides).", null, null);
            }
        }

        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        PhmDim = phmDim;
        PhmRank = phmRank;
        long a = inFeatures / phmDim, c = outFeatures / phmDim;
        W_left = new Parameter(torch.empty(phmDim, a, phmRank));
        W_right = new Parameter(torch.empty(phmDim, phmRank, c));
        b = new Parameter(torch.zeros(outFeatures));
        using (no_grad())
        {
            // xavier_normal_ on each [a, k] and [k, c] slice: std = sqrt(2 / (fan_in + fan_out)), the same for every slice.
            W_left.normal_(0, Math.Sqrt(2.0 / (a + phmRank)));
            W_right.normal_(0, Math.Sqrt(2.0 / (phmRank + c)));
        }

        register_parameter(nameof(W_left), W_left);
        register_parameter(nameof(W_right), W_right);
        register_parameter(nameof(b), b);
    }

    /// <summary>Input width.</summary>
    public long InFeatures { get; }

    /// <summary>Output width.</summary>
    public long OutFeatures { get; }

    /// <summary><c>n</c> (<c>phm_dim</c>).</summary>
    public int PhmDim { get; }

    /// <summary><c>k</c> (<c>phm_rank</c>).</summary>
    public int PhmRank { get; }

    /// <summary>How the product is computed (default <see cref="PhmPath.Auto"/>).</summary>
    public PhmPath Path { get; set; } = PhmPath.Auto;

    /// <summary><c>W_left</c>, <c>[n, in/n, k]</c>.</summary>
    public Parameter WeightLeft => W_left;

    /// <summary><c>W_right</c>, <c>[n, k, out/n]</c>.</summary>
    public Parameter WeightRight => W_right;

    /// <summary>The bias <c>b</c>, <c>[out]</c>.</summary>
    public Parameter Bias => b;

    /// <summary>The shared rule <c>A</c>, <c>[n, n, n]</c>.</summary>
    /// <exception cref="InvalidOperationException">No rule is bound yet.</exception>
    public Tensor Rule => _rule?[RuleName] ?? throw new InvalidOperationException(
        "This PHM layer has no phm_rule bound: insert it through AddBottleneckAdapters with a Compacter configuration, which binds the adapter's shared rule.");

    /// <summary>Binds the adapter's shared tensors (they hold <see cref="RuleName"/>).</summary>
    /// <param name="tensors">The set.</param>
    public void Bind(SharedAdapterTensors tensors) => _rule = tensors;

    /// <summary>Whether the factored path does fewer multiply-adds than forming <c>H</c> for <paramref name="rows"/> rows.</summary>
    /// <param name="rows">The number of input rows (tokens).</param>
    /// <returns>True when <c>N·n·k·(in + n² + out) &lt; (N + n)·in·out</c>.</returns>
    public bool FactoredIsCheaper(long rows)
    {
        long n = PhmDim;
        return rows * n * PhmRank * (InFeatures + (n * n) + OutFeatures) < (rows + n) * InFeatures * OutFeatures;
    }

    /// <summary><c>H = Σ_i A_i ⊗ (W_left_i · W_right_i)</c>, <c>[in, out]</c> (the caller disposes it).</summary>
    /// <returns>The matrix.</returns>
    public Tensor Matrix()
    {
        using var scope = NewDisposeScope();
        return Kronecker(Rule, W_left.bmm(W_right)).sum(dim: 0, keepdim: false).MoveToOuterDisposeScope();
    }

    /// <summary>The batched Kronecker product: <c>[..., P, Q] ⊗ [..., R, S]</c> → <c>[..., P·R, Q·S]</c> with entry
    /// <c>(p·R + r, q·S + s) = a[p, q]·b[r, s]</c>.</summary>
    /// <param name="a">The left factors.</param>
    /// <param name="b">The right factors.</param>
    /// <returns>The products (the caller disposes them).</returns>
    public static Tensor Kronecker(Tensor a, Tensor b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        using var scope = NewDisposeScope();
        long p = a.shape[^2], q = a.shape[^1], r = b.shape[^2], s = b.shape[^1];
        var product = a.unsqueeze(-1).unsqueeze(-3) * b.unsqueeze(-2).unsqueeze(-4);   // [..., p, r, q, s]
        var lead = product.shape[..^4];
        return product.reshape([.. lead, p * r, q * s]).MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        ArgumentNullException.ThrowIfNull(x);
        using var scope = NewDisposeScope();
        long rows = x.numel() / InFeatures;
        bool factored = Path switch { PhmPath.Dense => false, PhmPath.Factored => true, _ => FactoredIsCheaper(rows) };
        Tensor y;
        if (!factored)
        {
            y = x.matmul(Matrix());
        }
        else
        {
            long n = PhmDim, k = PhmRank, a = InFeatures / n, c = OutFeatures / n;
            var flat = x.reshape(rows * n, a);
            var left = W_left.permute(1, 0, 2).reshape(a, n * k);
            var t = flat.matmul(left).view(rows, n, n, k);                      // T[N, p, i, k] = x_p · W_left_i
            var u = torch.einsum("npik,ipq->nqik", t, Rule);                     // U[N, q, i, k] = Σ_p A_i[p, q] T[N, p, i, k]
            var right = W_right.reshape(n * k, c);
            y = u.reshape(rows * n, n * k).matmul(right).reshape([.. x.shape[..^1], OutFeatures]);   // y_q = Σ_i U[q, i] W_right_i
        }

        return (y + b).MoveToOuterDisposeScope();
    }
}
