namespace Peft.Models.Gpt2;

/// <summary>
/// Hugging Face PEFT's default target modules for GPT-2 (<c>peft/utils/constants.py</c>, model type <c>gpt2</c>), as
/// <see cref="TargetModules"/> for <see cref="PeftTargets"/>. <see cref="Gpt2LMHeadModel"/> declares no adapter; LoRA on the
/// fused query/key/value projection, PEFT's default, is one line:
/// <code>model.ApplyTargets(new PeftTargets(Gpt2Targets.LoRA, new LoRAOptions(Rank: 8, Alpha: 16)));</code>
/// The projections are Conv1D in transformers' checkpoints, so adapter files on them say <c>fan_in_fan_out: true</c>.
/// </summary>
public static class Gpt2Targets
{
    /// <summary>LoRA (and LoKr, DoRA, ...): <c>c_attn</c> (PEFT's <c>TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING</c>).</summary>
    public static TargetModules LoRA { get; } = TargetModules.Names("c_attn");

    /// <summary>IA3: <c>c_attn</c> and the feed-forward's <c>mlp.c_proj</c> (PEFT's <c>TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING</c>;
    /// the attention's <c>attn.c_proj</c> is not targeted).</summary>
    public static TargetModules IA3 { get; } = TargetModules.Names("c_attn", "mlp.c_proj");

    /// <summary>IA3's feed-forward modules (their input is scaled instead of their output): <c>mlp.c_proj</c>
    /// (PEFT's <c>TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING</c>).</summary>
    public static TargetModules IA3FeedForward { get; } = TargetModules.Names("mlp.c_proj");

    /// <summary>LayerNorm tuning: <c>ln_1</c>, <c>ln_2</c>, <c>ln_f</c> (PEFT's <c>TRANSFORMERS_MODELS_TO_LNTUNING_TARGET_MODULES_MAPPING</c>).</summary>
    public static TargetModules LayerNormTuning { get; } = TargetModules.Names("ln_1", "ln_2", "ln_f");

    /// <summary>Prompt tuning: the token embedding <c>transformer.wte</c> (transformers' <c>get_input_embeddings()</c>), where
    /// the virtual tokens are prepended.</summary>
    public static TargetModules PromptEmbedding { get; } = TargetModules.Names("wte");
}
