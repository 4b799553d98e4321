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
/// identity at init).</param>
public sealed record BottleneckConfig(
    double ReductionFactor = 16,
    string NonLinearity = "relu",
    bool MhAdapter = false,
    bool OutputAdapter = true,
    bool IsParallel = false,
    double Scaling = 1.0,
    string InitWeights = BottleneckConfig.MamAdapterInit)
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

    /// <summary>The bottleneck width for a sub-layer whose output has <paramref name="hidden"/> features.</summary>
    /// <param name="hidden">The sub-layer's output width.</param>
    /// <returns><c>floor(hidden / reduction_factor)</c>.</returns>
    public long Bottleneck(long hidden) => (long)Math.Floor(hidden / ReductionFactor);

    /// <summary>The trainable parameters of one adapter: <c>in·r + r + r·out + out</c>.</summary>
    /// <param name="input">Width the adapter reads.</param>
    /// <param name="output">Width it writes.</param>
    /// <returns>The count.</returns>
    public long CountParameters(long input, long output)
    {
        long r = Bottleneck(output);
        return (input * r) + r + (r * output) + output;
    }

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
    }

    /// <summary>Describes the configuration in the adapters library's field names.</summary>
    /// <returns>The description.</returns>
    public string Describe() =>
        $"reduction_factor={Show(ReductionFactor)}, non_linearity={NonLinearity}, mh_adapter={MhAdapter}, output_adapter={OutputAdapter}, " +
        $"is_parallel={IsParallel}, scaling={Show(Scaling)}, init_weights={InitWeights}";

    internal static string Show(double value) => value.ToString("R", CultureInfo.InvariantCulture);

    private static PeftConfigurationException Bad(string problem) =>
        new($"BottleneckConfig: {problem}", null, null);
}
