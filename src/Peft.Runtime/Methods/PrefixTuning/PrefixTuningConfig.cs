namespace Peft;

/// <summary>
/// Prefix tuning (Li and Liang; PEFT's <c>PrefixTuningConfig</c>, <c>peft_type</c> "PREFIX_TUNING"): every block's attention
/// sees <see cref="VirtualTokens"/> learned key/value positions before the sequence. The prefix is one table
/// <c>[num_virtual_tokens, Σ_layers 2·kv_width]</c> (PEFT's <c>prompt_embeddings</c>), layer ℓ's keys then values in its own
/// columns; with <see cref="Projection"/> the table is the output of PEFT's two-layer MLP
/// <c>Linear(token_dim, encoder_hidden_size) → tanh → Linear(encoder_hidden_size, Σ 2·kv_width)</c> over a
/// <c>[num_virtual_tokens, token_dim]</c> embedding (the reparameterisation the paper trains with), otherwise it is the
/// parameter itself.
/// </summary>
/// <param name="VirtualTokens">Prefix positions per layer (<c>num_virtual_tokens</c>), 1 to <see cref="MaxVirtualTokens"/>.</param>
/// <param name="Projection">Train through the MLP (<c>prefix_projection</c>).</param>
/// <param name="EncoderHiddenSize">The MLP's hidden width (<c>encoder_hidden_size</c>); null takes <c>token_dim</c>, as PEFT
/// does. Only with <see cref="Projection"/>.</param>
/// <param name="ZeroInit">Start the table (or the MLP's last layer) at zero, PEFT's <c>init_weights="zero"</c>; otherwise the
/// table is N(0, 1) as an <c>nn.Embedding</c> (PEFT's default) and the MLP has <c>nn.Linear</c>'s default initialisation.</param>
public sealed record PrefixTuningConfig(int VirtualTokens = 20, bool Projection = false, int? EncoderHiddenSize = null, bool ZeroInit = false)
{
    /// <summary>The file's <c>peft_type</c>.</summary>
    public const string PeftType = "PREFIX_TUNING";

    /// <summary>The largest <see cref="VirtualTokens"/> accepted (PEFT's prompt-learning limit here).</summary>
    public const int MaxVirtualTokens = PromptTuningOptions.MaxVirtualTokens;

    /// <summary>He et al.'s prefix inside a MAM adapter: 30 positions through an MLP of width 800.</summary>
    /// <returns>The configuration.</returns>
    public static PrefixTuningConfig Mam() => new(30, Projection: true, EncoderHiddenSize: 800);

    /// <summary>Checks the settings.</summary>
    /// <exception cref="PeftConfigurationException">A setting is out of range (the message names it and the fix).</exception>
    public void Validate()
    {
        if (VirtualTokens < 1 || VirtualTokens > MaxVirtualTokens)
        {
            throw new PeftConfigurationException(
                $"PrefixTuningConfig.VirtualTokens (num_virtual_tokens) is {VirtualTokens}; use 1 to {MaxVirtualTokens} prefix positions per layer.", null, null);
        }

        if (EncoderHiddenSize is int h && (!Projection || h < 1))
        {
            throw new PeftConfigurationException(
                Projection
                    ? $"PrefixTuningConfig.EncoderHiddenSize (encoder_hidden_size) is {h}; use a positive width, or null for token_dim."
                    : "PrefixTuningConfig.EncoderHiddenSize is set but Projection is false: the width belongs to the MLP reparameterisation; set Projection = true or drop EncoderHiddenSize.",
                null, null);
        }
    }

    /// <summary>A short description for messages.</summary>
    /// <returns>The text.</returns>
    public string Describe() => $"prefix tuning ({VirtualTokens} positions{(Projection ? $", MLP {EncoderHiddenSize?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "token_dim"}" : string.Empty)})";
}
