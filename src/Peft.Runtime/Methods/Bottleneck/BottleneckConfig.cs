using System.Globalization;

namespace Peft;

/// <summary>
/// A bottleneck adapter configuration with the adapters library's field names (adapter-hub/adapters <c>BnConfig</c>):
/// <c>a(h) = W_up σ(W_down h + b_down) + b_up</c> with <c>W_down</c> (hidden/<see cref="ReductionFactor"/> × hidden), inserted
/// after the attention sub-layer (<see cref="MhAdapter"/>) and/or the feed-forward sub-layer (<see cref="OutputAdapter"/>) of
/// every block of a transformer stack. Series (<see cref="IsParallel"/> false): the sub-layer output becomes
/// <c>h + s·a(h)</c>; parallel: <c>h + s·a(x)</c> with <c>x</c> the sub-layer's input (<c>s</c> = <see cref="Scaling"/>).
/// The presets are the adapters library's: <see cref="Houlsby"/> (<c>DoubleSeqBnConfig</c>), <see cref="Pfeiffer"/>
/// (<c>SeqBnConfig</c>), <see cref="ScaledParallel"/> (<c>ParBnConfig</c>, He et al.) and LLM-Adapters' <see cref="Parallel"/>.
/// </summary>
/// <param name="ReductionFactor">Hidden size over bottleneck size (<c>reduction_factor</c>); the bottleneck is
/// <c>floor(hidden / reduction_factor)</c> features, at least 1.</param>
/// <param name="NonLinearity">The activation between the projections (<c>non_linearity</c>): relu, swish (= silu), gelu or tanh.</param>
/// <param name="MhAdapter">Insert after each block's attention sub-layer (<c>mh_adapter</c>).</param>
/// <param name="OutputAdapter">Insert after each block's feed-forward sub-layer (<c>output_adapter</c>).</param>
/// <param name="IsParallel">Read the sub-layer's input instead of its output (<c>is_parallel</c>).</param>
/// <param name="Scaling">The factor on the adapter's output (<c>scaling</c>).</param>
/// <param name="InitWeights">The initialisation (<c>init_weights</c>): <c>mam_adapter</c> (W_down as a Linear layer's default,
/// W_up and both biases zero: the model equals its base at init) or <c>bert</c> (both weights N(0, 0.02²), biases zero: not the
/// identity at init). With <paramref name="PhmLayer"/> only <c>bert</c>, which leaves the PHM layers' own initialisation, as in
/// the adapters library.</param>
/// <param name="PhmLayer">Compacter (<c>phm_layer</c>): both projections are <see cref="Peft.PhmLayer"/>s whose rule
/// <c>phm_rule</c> is one trainable tensor shared by every adapter of the name (<see cref="Compacter"/>).</param>
/// <param name="PhmDim">The number of Kronecker terms <c>n</c> (<c>phm_dim</c>); it must divide the width and the bottleneck.</param>
/// <param name="PhmRank">The rank <c>k</c> of each <c>W_i = W_left_i W_right_i</c> (<c>phm_rank</c>).</param>
/// <param name="PhmInitRange">The standard deviation of the rule's normal initialisation (<c>phm_init_range</c>).</param>
public sealed record BottleneckConfig(
    double ReductionFactor = 16,
    string NonLinearity = "relu",
    bool MhAdapter = false,
    bool OutputAdapter = true,
    bool IsParallel = false,
    double Scaling = 1.0,
    string InitWeights = BottleneckConfig.MamAdapterInit,
    bool PhmLayer = false,
    int PhmDim = 4,
    int PhmRank = 1,
    double PhmInitRange = 1e-4)
{
    /// <summary>The zero-up-projection initialisation (the identity at init).</summary>
    public const string MamAdapterInit = "mam_adapter";

    /// <summary>The adapters library's <c>bert</c> initialisation: N(0, 0.02²) weights, zero biases.</summary>
    public const string BertInit = "bert";

    /// <summary>The file's <c>peft_type</c>: the adapters library's architecture name, upper-cased as PEFT spells types.</summary>
    public const string PeftType = "BOTTLENECK";

    private static readonly string[] s_activations = ["relu", "swish", "silu", "gelu", "tanh"];

    /// <summary>Houlsby et al. (the adapters library's <c>DoubleSeqBnConfig</c>): series after attention and after the
    /// feed-forward sub-layer, reduction factor 16, swish. Here with the zero-up init (the library's default is
    /// <c>bert</c>; pass <c>InitWeights = BertInit</c> for it).</summary>
    /// <returns>The configuration.</returns>
    public static BottleneckConfig Houlsby() => new(16, "swish", MhAdapter: true, OutputAdapter: true);

    /// <summary>Pfeiffer et al. (<c>SeqBnConfig</c>): series after the feed-forward sub-layer only, reduction factor 16, relu.</summary>
    /// <returns>The configuration.</returns>
    public static BottleneckConfig Pfeiffer() => new(16, "relu", MhAdapter: false, OutputAdapter: true);

    /// <summary>He et al.'s scaled parallel adapter (<c>ParBnConfig</c>): beside the feed-forward sub-layer from its input,
    /// reduction factor 2, relu, output scaled by 4, <c>mam_adapter</c> init.</summary>
    /// <returns>The configuration.</returns>
    public static BottleneckConfig ScaledParallel() => new(2, "relu", MhAdapter: false, OutputAdapter: true, IsParallel: true, Scaling: 4.0);

    /// <summary>LLM-Adapters' parallel adapter: beside the feed-forward sub-layer from its input, unscaled (scaling 1),
    /// reduction factor 16, relu.</summary>
    /// <returns>The configuration.</returns>
    public static BottleneckConfig Parallel() => new(16, "relu", MhAdapter: false, OutputAdapter: true, IsParallel: true, Scaling: 1.0);

    /// <summary>Compacter (the adapters library's <c>CompacterConfig</c>): PHM projections (phm_dim 4, phm_rank 1, one shared
    /// rule), series after attention and after the feed-forward sub-layer, reduction factor 32, gelu, <c>bert</c> init (the PHM
    /// layers' own: xavier-normal factors, rule N(0, 1e-4²), zero biases; not the identity at init).</summary>
    /// <returns>The configuration.</returns>
    public static BottleneckConfig Compacter() => new(32, "gelu", MhAdapter: true, OutputAdapter: true, InitWeights: BertInit, PhmLayer: true);

    /// <summary>Compacter++ (<c>CompacterPlusPlusConfig</c>): as <see cref="Compacter"/>, after the feed-forward sub-layer only.</summary>
    /// <returns>The configuration.</returns>
    public static BottleneckConfig CompacterPlusPlus() => new(32, "gelu", MhAdapter: false, OutputAdapter: true, InitWeights: BertInit, PhmLayer: true);

    /// <summary>The bottleneck width for a sub-layer whose output has <paramref name="hidden"/> features.</summary>
    /// <param name="hidden">The sub-layer's output width.</param>
    /// <returns><c>floor(hidden / reduction_factor)</c>.</returns>
    public long Bottleneck(long hidden) => (long)Math.Floor(hidden / ReductionFactor);

    /// <summary>The trainable parameters of one adapter: <c>in·r + r + r·out + out</c>; with PHM layers
    /// <c>k·(in + r) + r</c> for the down layer and <c>k·(r + out) + out</c> for the up layer (the shared rule is
    /// <see cref="SharedParameterCount"/>, once per adapter name).</summary>
    /// <param name="input">Width the adapter reads.</param>
    /// <param name="output">Width it writes.</param>
    /// <returns>The count.</returns>
    public long CountParameters(long input, long output)
    {
        long r = Bottleneck(output);
        return PhmLayer
            ? (PhmRank * (input + r)) + r + (PhmRank * (r + output)) + output
            : (input * r) + r + (r * output) + output;
    }

    /// <summary>The parameters shared by every adapter of one name: the rule's <c>n³</c> with PHM layers, otherwise 0.</summary>
    public long SharedParameterCount => PhmLayer ? (long)PhmDim * PhmDim * PhmDim : 0;

    /// <summary>Checks the configuration; the message names the field and the fix.</summary>
    /// <exception cref="PeftConfigurationException">A field is out of range or unknown.</exception>
    public void Validate()
    {
        if (!(ReductionFactor > 0) || double.IsInfinity(ReductionFactor))
        {
            throw Bad($"reduction_factor = {Show(ReductionFactor)} must be a positive number (hidden size over bottleneck size, e.g. 16).");
        }

        if (!s_activations.Contains(NonLinearity, StringComparer.Ordinal))
        {
            throw Bad($"non_linearity = '{NonLinearity}' is not one of {string.Join(", ", s_activations)}.");
        }

        if (!MhAdapter && !OutputAdapter)
        {
            throw Bad("mh_adapter and output_adapter are both false, so nothing would be inserted; set at least one.");
        }

        if (!double.IsFinite(Scaling))
        {
            throw Bad($"scaling = {Show(Scaling)} must be a finite number.");
        }

        if (InitWeights is not (MamAdapterInit or BertInit))
        {
            throw Bad($"init_weights = '{InitWeights}' is not '{MamAdapterInit}' (zero up projection, identity at init) or '{BertInit}'.");
        }

        if (PhmLayer)
        {
            if (InitWeights != BertInit)
            {
                throw Bad($"init_weights = '{InitWeights}' with phm_layer = true: PHM layers initialise themselves (the adapters library's '{BertInit}' " +
                    "leaves them so, and its mam_adapter path has no PHM weight to zero); use init_weights = 'bert', as BottleneckConfig.Compacter() does.");
            }

            if (PhmDim < 1)
            {
                throw Bad($"phm_dim = {PhmDim} must be at least 1 (the number of Kronecker terms, 4 in Compacter).");
            }

            if (PhmRank < 1)
            {
                throw Bad($"phm_rank = {PhmRank} must be at least 1 (the rank of each W_i = W_left_i W_right_i, 1 in Compacter).");
            }

            if (!(PhmInitRange > 0) || !double.IsFinite(PhmInitRange))
            {
                throw Bad($"phm_init_range = {Show(PhmInitRange)} must be a positive finite number (the rule's standard deviation, 1e-4 in Compacter).");
            }
        }
    }

    /// <summary>Describes the configuration in the adapters library's field names.</summary>
    /// <returns>The description.</returns>
    public string Describe() =>
        $"reduction_factor={Show(ReductionFactor)}, non_linearity={NonLinearity}, mh_adapter={MhAdapter}, output_adapter={OutputAdapter}, " +
        $"is_parallel={IsParallel}, scaling={Show(Scaling)}, init_weights={InitWeights}" +
        (PhmLayer ? $", phm_layer=True, phm_dim={PhmDim}, phm_rank={PhmRank}, phm_init_range={Show(PhmInitRange)}" : "");

    internal static string Show(double value) => value.ToString("R", CultureInfo.InvariantCulture);

    private static PeftConfigurationException Bad(string problem) =>
        new($"BottleneckConfig: {problem}", null, null);
}
