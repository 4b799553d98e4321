using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Peft;

/// <summary>
/// A HiRA adapter matching Hugging Face PEFT's <c>hira</c> layer for linear layers: <c>W' = W + W ⊙ (B A)</c> with
/// <c>A ∈ R^{r×in}</c> (<c>hira_A</c>) and <c>B ∈ R^{out×r}</c> (<c>hira_B</c>), no scaling (PEFT applies none).
/// </summary>
/// <remarks>
/// <para>Parameters are registered under PEFT's names <c>hira_A</c> and <c>hira_B</c> (bare parameters, no <c>.weight</c>
/// suffix). Initialisation is PEFT's default (<c>init_weights=True</c>): A kaiming-uniform with a = √5, B zeros, so the
/// initial update is exactly zero.</para>
/// <para>Forward (<see cref="IWeightRewritingAdapter"/>): the layer runs one base product with
/// <see cref="EffectiveWeight"/> <c>W ⊙ (1 + B A)</c>, formed by the rank-r product <c>B A</c> and one element-wise pass; PEFT
/// runs the base product and then a second full-size product with <c>W ⊙ B A</c>. Autograd reaches A and B through the
/// effective weight: <c>∂(B A) = (gᵀ x) ⊙ W</c>, the full-size product every HiRA backward pays. In training with
/// <see cref="HiRAOptions.Dropout"/> &gt; 0 the update term reads a dropped-out input as in PEFT, so the adapter then adds
/// <c>(W ⊙ B A) dropout(x)</c> after the base product instead (<see cref="AddSeparately"/>).</para>
/// <para>Merging is <c>W ← W ⊙ (1 + B A)</c> and unmerging <c>W ← W / (1 + B A)</c> (PEFT's). The factor is recomputed from the
/// same parameters, so an unmerge returns each weight to within two roundings (a multiply and a divide) of its value,
/// whatever the factor's size, unless the product overflowed or underflowed. Where <c>1 + B A</c> has an exact zero the merge
/// would erase those weights for good (and the unmerge divide by zero); both refuse.</para>
/// </remarks>
public sealed class HiRAAdapter : PeftAdapter, IWeightRewritingAdapter
{
    private const string AName = "hira_A";
    private const string BName = "hira_B";

    private Parameter _a;
    private Parameter _b;

    /// <summary>Creates a HiRA adapter initialised as PEFT does, so that its initial update is exactly zero.</summary>
    /// <param name="adapterName">The adapter name.</param>
    /// <param name="layer">The layer.</param>
    /// <param name="options">The HiRA options.</param>
    /// <exception cref="PeftConfigurationException">The name or options are invalid for the layer.</exception>
    public HiRAAdapter(string adapterName, PeftLayerInfo layer, HiRAOptions options)
        : base(adapterName, layer)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate(adapterName, layer);
        Options = options;
        _a = CreateParameter(AName, options.Rank, layer.InFeatures);
        _b = CreateParameter(BName, layer.OutFeatures, options.Rank);
        ResetParameters();
        TrackDevice(_a);
    }

    /// <summary>The options the adapter was created with.</summary>
    public HiRAOptions Options { get; }

    /// <inheritdoc />
    public override PeftAdapterOptions Config => Options;

    /// <summary><c>hira_A</c> <c>[r, in]</c>.</summary>
    public Parameter A => _a;

    /// <summary><c>hira_B</c> <c>[out, r]</c>.</summary>
    public Parameter B => _b;

    /// <summary>False in training with dropout: the update term then reads a dropped-out input and cannot share the base
    /// product.</summary>
    public bool SharesBaseProduct => !(training && Options.Dropout > 0);

    /// <summary>Re-initialises the parameters as PEFT does (<c>init_weights=True</c>): A kaiming-uniform with a = √5, B zeros.</summary>
    public void ResetParameters()
    {
        using var noGrad = torch.no_grad();
        nn.init.kaiming_uniform_(_a, a: Math.Sqrt(5));
        nn.init.zeros_(_b);
    }

    /// <summary>The Hadamard factor <c>B A</c> <c>[out, in]</c> (PEFT's <c>get_delta_weight</c>: the update is
    /// <c>W ⊙ B A</c>). Differentiable; the caller disposes it.</summary>
    /// <returns>A new tensor.</returns>
    public Tensor Factor() => _b.matmul(_a);

    /// <summary><c>W ⊙ (1 + B A)</c>: the rank-r product, one in-place shift and one element-wise product. Differentiable in
    /// A and B (and in <paramref name="weight"/> if it requires a gradient); the caller disposes it.</summary>
    /// <param name="weight">The weight <c>[out, in]</c>.</param>
    /// <returns>A new tensor.</returns>
    public Tensor EffectiveWeight(Tensor weight)
    {
        ArgumentNullException.ThrowIfNull(weight);
        using var factor = Factor();
        factor.add_(1);   // in place on the product: its backward does not need its output
        return weight * factor;
    }

    /// <summary>PEFT's update term in training with dropout: adds <c>dropout(x) (W ⊙ B A)ᵀ</c> to <paramref name="output"/>.</summary>
    /// <param name="input">The layer input <c>[N, in]</c>.</param>
    /// <param name="output">The output so far <c>[N, out]</c>, updated in place.</param>
    /// <param name="weight">The base weight.</param>
    public void AddSeparately(Tensor input, Tensor output, Tensor weight)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(weight);
        using var dropped = Options.Dropout > 0 && training ? F.dropout(input, Options.Dropout, training: true) : input.alias();
        using var factor = Factor();
        using var update = weight * factor;
        using var term = F.linear(dropped, update);
        output.add_(term);
    }

    /// <summary><c>W ← W ⊙ (1 + B A)</c> (PEFT's merge; the bias is not changed).</summary>
    /// <param name="target">The base parameters.</param>
    /// <exception cref="InvalidOperationException"><c>1 + B A</c> has an exact zero, so the merge could not be undone.</exception>
    public void MergeInto(LayerParameters target)
    {
        ArgumentNullException.ThrowIfNull(target);
        using var factor = OnePlusFactor(target.Weight, "merge");
        target.Weight.mul_(factor);
    }

    /// <summary><c>W ← W / (1 + B A)</c> (PEFT's unmerge): within two roundings of the weight before the merge.</summary>
    /// <param name="target">The merged parameters.</param>
    /// <exception cref="InvalidOperationException"><c>1 + B A</c> has an exact zero.</exception>
    public void UnmergeFrom(LayerParameters target)
    {
        ArgumentNullException.ThrowIfNull(target);
        using var factor = OnePlusFactor(target.Weight, "unmerge");
        target.Weight.div_(factor);
    }

    /// <inheritdoc />
    public override IEnumerable<(string PeftName, Parameter Parameter)> PeftTensors()
    {
        yield return (AName, _a);
        yield return (BName, _b);
    }

    /// <summary>Moves or converts the adapter, then refreshes the cached parameters.</summary>
    /// <param name="dtype">The target element type, if converting.</param>
    /// <param name="device">The target device, if moving.</param>
    /// <param name="non_blocking">Whether to copy asynchronously where possible.</param>
    protected override void _toEpilog(ScalarType? dtype, Device? device, bool non_blocking)
    {
        base._toEpilog(dtype, device, non_blocking);
        _a = RegisteredParameter(AName)!;
        _b = RegisteredParameter(BName)!;
    }

    /// <summary><c>1 + B A</c> in the weight's dtype and device, refusing an exact zero (which a merge cannot undo).</summary>
    private Tensor OnePlusFactor(Tensor weight, string operation)
    {
        using var product = Factor();
        product.add_(1);
        var factor = product.to(weight.dtype, weight.device);
        using var zeros = factor.eq(0);
        long count = zeros.sum().item<long>();
        if (count > 0)
        {
            factor.Dispose();
            throw new InvalidOperationException(
                $"HiRA adapter '{AdapterName}'{AdapterNameRules.Describe(MemberName)} cannot {operation}: 1 + hira_B·hira_A has {count} zero entr{(count == 1 ? "y" : "ies")}, " +
                "so merging would set those weights to zero for good (and unmerging would divide by zero). Keep the adapter unmerged (it still runs at one base product).");
        }

        return factor;
    }
}
