namespace Peft.Models.UseLite;

/// <summary>
/// Target modules for the Universal Sentence Encoder lite, as <see cref="TargetModules"/> for <see cref="PeftTargets"/>.
/// PEFT has no mapping for this model (it is not a transformers model); these lists follow PEFT's choices for the
/// transformers encoders it knows, mapped onto USE-lite's names. <see cref="UseLiteEncoder"/> declares no adapter; LoRA
/// on every projection is one line, e.g. on the sentiment sample's classifier:
/// <code>classifier.ApplyTargets(new PeftTargets(UseLiteTargets.LoRA, new LoRAOptions(Rank: 4)));</code>
/// </summary>
public static class UseLiteTargets
{
    /// <summary>LoRA (and LoKr, DoRA, ...): every attention and feed-forward projection of both layers, <c>q_proj</c>,
    /// <c>k_proj</c>, <c>v_proj</c>, <c>out_proj</c>, <c>fc1</c>, <c>fc2</c> (12 layers; <c>residual_proj</c> and the
    /// <c>pooler</c> are left out).</summary>
    public static TargetModules LoRA { get; } = TargetModules.Names("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2");

    /// <summary>IA3: <c>k_proj</c>, <c>v_proj</c> and the feed-forward's output projection <c>fc2</c>, as PEFT's lists for
    /// Llama (k, v, down) and BERT (key, value, output.dense).</summary>
    public static TargetModules IA3 { get; } = TargetModules.Names("k_proj", "v_proj", "fc2");

    /// <summary>IA3's feed-forward modules (their input is scaled instead of their output): <c>fc2</c>.</summary>
    public static TargetModules IA3FeedForward { get; } = TargetModules.Names("fc2");

    /// <summary>LayerNorm tuning: both norms of each layer, <c>attention_norm</c> and <c>ffn_norm</c>.</summary>
    public static TargetModules LayerNormTuning { get; } = TargetModules.Names("attention_norm", "ffn_norm");

    /// <summary>BitFit: every layer with a bias, the projections (<c>residual_proj</c> included), both norms of each layer and
    /// the <c>pooler</c>: every bias of the encoder.</summary>
    public static TargetModules BitFit { get; } = TargetModules.Names(
        "q_proj", "k_proj", "v_proj", "out_proj", "residual_proj", "fc1", "fc2", "attention_norm", "ffn_norm", "pooler");

    /// <summary>SSF: after every attention and feed-forward projection and both norms of each layer, the paper's insertion
    /// points for a ViT (after qkv, proj, fc1, fc2, norm1, norm2) mapped onto USE-lite's names.</summary>
    public static TargetModules SSF { get; } = TargetModules.Names(
        "q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2", "attention_norm", "ffn_norm");

    /// <summary>Prompt tuning: the token embeddings <c>embeddings</c>, where the virtual tokens are prepended.</summary>
    public static TargetModules PromptEmbedding { get; } = TargetModules.Names("embeddings");
}
