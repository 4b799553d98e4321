namespace Peft.Models.Llama;

/// <summary>
/// Hugging Face PEFT's default target modules for Llama-layout models (<c>peft/utils/constants.py</c>, model type
/// <c>llama</c>; Mistral and Qwen2 have the same lists), as <see cref="TargetModules"/> for <see cref="PeftTargets"/>.
/// <see cref="LlamaForCausalLM"/> declares no adapter; LoRA on q/v, PEFT's default, is one line:
/// <code>model.ApplyTargets(new PeftTargets(LlamaTargets.LoRA, new LoRAOptions(Rank: 8, Alpha: 16)));</code>
/// </summary>
public static class LlamaTargets
{
    /// <summary>LoRA (and LoKr, DoRA, ...): <c>q_proj</c>, <c>v_proj</c> (PEFT's <c>TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING</c>).</summary>
    public static TargetModules LoRA { get; } = TargetModules.Names("q_proj", "v_proj");

    /// <summary>IA3: <c>k_proj</c>, <c>v_proj</c>, <c>down_proj</c> (PEFT's <c>TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING</c>).</summary>
    public static TargetModules IA3 { get; } = TargetModules.Names("k_proj", "v_proj", "down_proj");

    /// <summary>IA3's feed-forward modules (their input is scaled instead of their output): <c>down_proj</c>
    /// (PEFT's <c>TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING</c>).</summary>
    public static TargetModules IA3FeedForward { get; } = TargetModules.Names("down_proj");

    /// <summary>LayerNorm tuning: <c>input_layernorm</c>, <c>post_attention_layernorm</c> and the final <c>norm</c>
    /// (PEFT's <c>TRANSFORMERS_MODELS_TO_LNTUNING_TARGET_MODULES_MAPPING</c>; "norm" matches <c>model.norm</c> only, since a
    /// list entry matches a whole dotted segment). The norms are RMSNorms (<see cref="LlamaRmsNorm"/>, an <see cref="IAdaptableNorm"/>).</summary>
    public static TargetModules LayerNormTuning { get; } = TargetModules.Names("input_layernorm", "post_attention_layernorm", "norm");

    /// <summary>Prompt tuning: the input embedding <c>model.embed_tokens</c> (transformers' <c>get_input_embeddings()</c>),
    /// where the virtual tokens are prepended.</summary>
    public static TargetModules PromptEmbedding { get; } = TargetModules.Names("embed_tokens");
}
