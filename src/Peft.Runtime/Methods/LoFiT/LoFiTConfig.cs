namespace Peft;

/// <summary>Which of LoFiT's per-head vectors an adapter holds and trains.</summary>
public enum LoFiTComponents
{
    /// <summary>The scales <c>A</c> only (stage 1: <c>z_h ← (1 + A_h) ⊙ z_h</c>, trained with an L1 penalty to rank the heads).</summary>
    Scale,

    /// <summary>The offsets <c>v</c> only (stage 2, the paper's LoFiT: <c>z_h ← z_h + v_h</c> on the selected heads).</summary>
    Bias,

    /// <summary>Both (<c>z_h ← (1 + A_h) ⊙ z_h + v_h</c>): a variant that also retrains the scales of the selected heads.</summary>
    ScaleAndBias,
}

/// <summary>
/// LoFiT (Yin et al., "LoFiT: Localized Fine-tuning on LLM Representations"): per attention head <c>h</c> of layer
/// <c>ℓ</c>, a scale <c>A_{ℓ,h}</c> and an offset <c>v_{ℓ,h}</c> (each <c>head_dim</c> wide) act on the head's output before the
/// output projection: <c>z_h ← (1 + A_h) ⊙ z_h + v_h</c>. Stage 1 trains the scales of every head with
/// <see cref="L1Lambda"/>·Σ|A| added to the loss, <see cref="LoFiT.SelectHeads(TorchSharp.torch.nn.Module, double, string)"/>
/// keeps the heads with the largest ‖A_{ℓ,h}‖₂; stage 2 trains offsets on those heads only. Not in PEFT: this library's own
/// files (<see cref="LoFiTFiles"/>).
/// </summary>
/// <param name="Components">Which vectors the adapter holds and trains (<see cref="LoFiTComponents.Scale"/> in stage 1,
/// <see cref="LoFiTComponents.Bias"/> in stage 2).</param>
/// <param name="L1Lambda">The weight of the L1 penalty Σ|A| (<c>l1_lambda</c>; the paper tunes it around 1e-3 to 5e-3); a
/// loss term through <see cref="PeftModel.AdapterLossTerms"/>. 0 or more; used only with scales.</param>
/// <param name="InitStd">Standard deviation of the normal initialisation of both vectors (the authors' 1e-3); 0 starts at
/// the identity.</param>
public sealed record LoFiTConfig(LoFiTComponents Components = LoFiTComponents.Scale, double L1Lambda = 0.0, double InitStd = LoFiTConfig.DefaultInitStd)
{
    /// <summary>The <c>peft_type</c> of this library's LoFiT files (PEFT has no LoFiT).</summary>
    public const string PeftType = "LOFIT";

    /// <summary>The authors' initialisation scale, N(0, 1e-3).</summary>
    public const double DefaultInitStd = 1e-3;

    /// <summary>The paper's default share of heads kept for stage 2 (10%).</summary>
    public const double DefaultHeadFraction = 0.1;

    /// <summary>Whether the adapter holds scales <c>A</c>.</summary>
    public bool HasScale => Components != LoFiTComponents.Bias;

    /// <summary>Whether the adapter holds offsets <c>v</c>.</summary>
    public bool HasBias => Components != LoFiTComponents.Scale;

    /// <summary>Checks the fields.</summary>
    /// <exception cref="PeftConfigurationException">A field is out of range (the message names it and the fix).</exception>
    public void Validate()
    {
        if (!Enum.IsDefined(Components))
        {
            throw new PeftConfigurationException($"LoFiTConfig.Components is {(int)Components}; use Scale, Bias or ScaleAndBias.", nameof(Components), null);
        }

        if (!double.IsFinite(L1Lambda) || L1Lambda < 0)
        {
            throw new PeftConfigurationException(
                $"LoFiTConfig.L1Lambda (l1_lambda) is {L1Lambda}; it must be a finite number of at least 0 (the paper uses about 1e-3 to 5e-3).",
                nameof(L1Lambda), null);
        }

        if (!double.IsFinite(InitStd) || InitStd < 0)
        {
            throw new PeftConfigurationException(
                $"LoFiTConfig.InitStd is {InitStd}; it must be a finite number of at least 0 (the authors use 1e-3; 0 starts at the base model).",
                nameof(InitStd), null);
        }
    }

    /// <summary>The name of <paramref name="components"/> in files (<c>scale</c>, <c>bias</c>, <c>scale_and_bias</c>).</summary>
    /// <param name="components">The components.</param>
    /// <returns>The file name.</returns>
    public static string FileName(LoFiTComponents components) => components switch
    {
        LoFiTComponents.Scale => "scale",
        LoFiTComponents.Bias => "bias",
        _ => "scale_and_bias",
    };

    /// <summary>The components a file names, or null for an unknown name.</summary>
    /// <param name="name">The file's value.</param>
    /// <returns>The components, or null.</returns>
    public static LoFiTComponents? ParseFileName(string name) => name switch
    {
        "scale" => LoFiTComponents.Scale,
        "bias" => LoFiTComponents.Bias,
        "scale_and_bias" => LoFiTComponents.ScaleAndBias,
        _ => null,
    };
}

/// <summary>One attention head: its block's index (bottom first) and its index within the attention.</summary>
/// <param name="Layer">The block.</param>
/// <param name="Head">The query head.</param>
public readonly record struct LoFiTHead(int Layer, int Head);
