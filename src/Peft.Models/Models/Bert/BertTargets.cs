namespace Peft.Models.Bert;

/// <summary>
/// Hugging Face PEFT's default target modules for BERT (<c>peft/utils/constants.py</c>, model type <c>bert</c>), as
/// <see cref="TargetModules"/> for <see cref="PeftTargets"/>. <see cref="BertForSequenceClassification"/> declares no
/// adapter; LoRA on query/value, PEFT's default, is one line:
/// <code>model.ApplyTargets(new PeftTargets(BertTargets.LoRA, new LoRAOptions(Rank: 8, Alpha: 16)));</code>
/// </summary>
public static class BertTargets
{
    /// <summary>LoRA (and LoKr, DoRA, ...): <c>query</c>, <c>value</c> (PEFT's <c>TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING</c>).</summary>
    public static TargetModules LoRA { get; } = TargetModules.Names("query", "value");

    /// <summary>IA3: <c>key</c>, <c>value</c>, <c>output.dense</c> (PEFT's <c>TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING</c>).
    /// "output.dense" matches both <c>attention.output.dense</c> and the feed-forward's <c>output.dense</c> of every layer.</summary>
    public static TargetModules IA3 { get; } = TargetModules.Names("key", "value", "output.dense");

    /// <summary>IA3's feed-forward modules (their input is scaled instead of their output): <c>output.dense</c> (PEFT's
    /// <c>TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING</c>). PEFT tests these by a plain suffix, so both
    /// <c>attention.output.dense</c> and the feed-forward's <c>output.dense</c> count as feed-forward there too.</summary>
    public static TargetModules IA3FeedForward { get; } = TargetModules.Names("output.dense");

    /// <summary>
    /// LayerNorm tuning: every <c>LayerNorm</c> (the embeddings' and, in each layer, <c>attention.output.LayerNorm</c> and
    /// <c>output.LayerNorm</c>). PEFT has no default for BERT (it asks for <c>target_modules</c>); this list is the
    /// counterpart of its Llama and GPT-2 lists, which take every norm of the model.
    /// </summary>
    public static TargetModules LayerNormTuning { get; } = TargetModules.Names("LayerNorm");

    /// <summary>Prompt tuning: the input embedding <c>bert.embeddings.word_embeddings</c> (transformers'
    /// <c>get_input_embeddings()</c>), where the virtual tokens are prepended.</summary>
    public static TargetModules PromptEmbedding { get; } = TargetModules.Names("word_embeddings");
}
