using System.Globalization;

namespace Peft;

/// <summary>The three MEFT variants (Liao et al., "Make Pre-trained Model Reversible"): which function of each reversible
/// layer is the pretrained block and which the adapter.</summary>
public enum MeftVariant
{
    /// <summary>MEFT₁ (<c>f_arch = "layer"</c>): <c>F</c> = the pretrained block (with a parallel adapter beside its
    /// feed-forward sub-layer), <c>G</c> = an adapter; the output halves are swapped.</summary>
    Meft1,

    /// <summary>MEFT₂ (<c>f_arch = "adapter"</c>): <c>F</c> = an adapter, <c>G</c> = the pretrained block (with its parallel
    /// feed-forward adapter); the output halves are swapped.</summary>
    Meft2,

    /// <summary>MEFT₃ (<c>f_arch = "attn"</c>): <c>F</c> = the attention sub-layer, <c>G</c> = the feed-forward sub-layer.
    /// Not supported: it needs each block split into two functions, which the stack contract does not offer; configuring it
    /// is refused with that reason.</summary>
    Meft3,
}

/// <summary>
/// A MEFT configuration with the authors' field names (BaohaoLiao/mefts): every block of a transformer stack becomes a
/// reversible layer on a doubled stream <c>(x₁, x₂)</c>, <c>x₁ = x₂ = h₀</c> at the bottom: <c>y₁ = λx₁ + F(x₂)</c>,
/// <c>y₂ = βx₂ + G(y₁)</c>, output <c>(y₂, y₁)</c>; the stack's output is <c>(x₁ + x₂)/2</c>. The bottom
/// <see cref="NumRevLayers"/> blocks are reversible in training: the backward rebuilds each block's input from its output
/// (<c>x₂ = (y₂ − G(y₁))/β</c>, <c>x₁ = (y₁ − F(x₂))/λ</c>) instead of keeping activations, so their activation memory does
/// not grow with depth.
/// </summary>
/// <param name="Variant">Which function is the block (<c>f_arch</c>).</param>
/// <param name="X1Factor">λ (<c>x1_factor</c>), the factor on <c>x₁</c>; the backward divides by it.</param>
/// <param name="X2Factor">β (<c>x2_factor</c>), the factor on <c>x₂</c>; the backward divides by it.</param>
/// <param name="AdapterBottleneckDim">The adapters' bottleneck width (<c>adapter_bottleneck_dim</c>; the authors' script uses 8).</param>
/// <param name="NumRevLayers">How many bottom blocks use the reversible backward (<c>num_rev_layers</c>); the blocks above
/// keep their activations (ordinary backpropagation); null for every block.</param>
/// <param name="HiddenAct">The adapters' activation (<c>hidden_act</c>): gelu, relu, silu or tanh.</param>
/// <param name="AdapterDropout">Dropout inside the adapters (the authors use the model's <c>hidden_dropout_prob</c>).</param>
/// <param name="LayernormInAdapter">A LayerNorm before the reversible adapter (<c>layernorm_in_adapter</c>).</param>
public sealed record MeftConfig(
    MeftVariant Variant = MeftVariant.Meft1,
    double X1Factor = 0.1,
    double X2Factor = 0.1,
    int AdapterBottleneckDim = 8,
    int? NumRevLayers = null,
    string HiddenAct = "gelu",
    double AdapterDropout = 0.0,
    bool LayernormInAdapter = false)
{
    /// <summary>The file's <c>peft_type</c> (MEFT is not in PEFT; this library's own format).</summary>
    public const string PeftType = "MEFT";

    /// <summary>The adapters' weight initialisation: N(0, 0.02²), biases zero (BERT's <c>_init_weights</c>, which the
    /// authors' model applies to every Linear).</summary>
    public const double InitStd = 0.02;

    private static readonly string[] s_activations = ["gelu", "relu", "silu", "tanh"];

    /// <summary>The authors' <c>f_arch</c> value of a variant.</summary>
    /// <param name="variant">The variant.</param>
    /// <returns>"layer", "adapter" or "attn".</returns>
    public static string FArch(MeftVariant variant) => variant switch
    {
        MeftVariant.Meft1 => "layer",
        MeftVariant.Meft2 => "adapter",
        _ => "attn",
    };

    /// <summary>The variant of an <c>f_arch</c> value, or null.</summary>
    /// <param name="fArch">The value.</param>
    /// <returns>The variant or null.</returns>
    public static MeftVariant? FromFArch(string fArch) => fArch switch
    {
        "layer" => MeftVariant.Meft1,
        "adapter" => MeftVariant.Meft2,
        "attn" => MeftVariant.Meft3,
        _ => null,
    };

    /// <summary>Checks the configuration; the message names the field and the fix.</summary>
    /// <exception cref="PeftConfigurationException">A field is out of range, or the variant is MEFT₃.</exception>
    public void Validate()
    {
        if (Variant == MeftVariant.Meft3)
        {
            throw Bad("f_arch = attn (MEFT3) needs each block split into its attention and feed-forward halves as two functions, which the transformer-stack " +
                "contract does not offer yet; use MeftVariant.Meft1 (f_arch = layer) or MeftVariant.Meft2 (f_arch = adapter).");
        }

        if (!Enum.IsDefined(Variant))
        {
            throw Bad($"f_arch = {(int)Variant} is not a MEFT variant; use Meft1 or Meft2.");
        }

        foreach (var (name, value) in new[] { ("x1_factor", X1Factor), ("x2_factor", X2Factor) })
        {
            if (!double.IsFinite(value) || value == 0)
            {
                throw Bad($"{name} = {Show(value)} must be a finite nonzero number (the reversible backward divides by it; the paper uses 0.1).");
            }
        }

        if (AdapterBottleneckDim < 1)
        {
            throw Bad($"adapter_bottleneck_dim = {AdapterBottleneckDim} must be at least 1 (the authors use 8).");
        }

        if (NumRevLayers is < 0)
        {
            throw Bad($"num_rev_layers = {NumRevLayers} must be 0 or more (null: every block).");
        }

        if (!s_activations.Contains(HiddenAct, StringComparer.Ordinal))
        {
            throw Bad($"hidden_act = '{HiddenAct}' is not one of {string.Join(", ", s_activations)}.");
        }

        if (!(AdapterDropout >= 0 && AdapterDropout < 1))
        {
            throw Bad($"adapter_dropout = {Show(AdapterDropout)} must be in [0, 1).");
        }
    }

    /// <summary>The trainable parameters of one block: two adapters of <c>2·d·r + r + d</c> (plus <c>2d</c> for the
    /// reversible adapter's LayerNorm).</summary>
    /// <param name="hidden">The block's width <c>d</c>.</param>
    /// <returns>The count.</returns>
    public long CountParameters(long hidden)
    {
        long r = AdapterBottleneckDim;
        long adapter = (2 * hidden * r) + r + hidden;
        return (2 * adapter) + (LayernormInAdapter ? 2 * hidden : 0);
    }

    /// <summary>Describes the configuration in the authors' field names.</summary>
    /// <returns>The description.</returns>
    public string Describe() =>
        $"f_arch={FArch(Variant)}, x1_factor={Show(X1Factor)}, x2_factor={Show(X2Factor)}, adapter_bottleneck_dim={AdapterBottleneckDim}, " +
        $"num_rev_layers={(NumRevLayers is { } n ? n.ToString(CultureInfo.InvariantCulture) : "all")}, hidden_act={HiddenAct}, " +
        $"adapter_dropout={Show(AdapterDropout)}, layernorm_in_adapter={LayernormInAdapter}";

    internal static string Show(double value) => value.ToString("R", CultureInfo.InvariantCulture);

    private static PeftConfigurationException Bad(string problem) => new($"MeftConfig: {problem}", null, null);
}
