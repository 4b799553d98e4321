using Peft.Checkpoints;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Models.Llama;

/// <summary>
/// A LLaMA-style causal language model (Llama, Mistral, Qwen2 layouts without attention bias) whose state-dict
/// names are transformers' <c>LlamaForCausalLM</c> keys (<c>model.embed_tokens.weight</c>,
/// <c>model.layers.0.self_attn.q_proj.weight</c>, ..., <c>model.norm.weight</c>, <c>lm_head.weight</c>), so
/// <see cref="HfCheckpoint"/> loads Hugging Face checkpoints strictly and adapter keys read as PEFT's. With tied
/// embeddings there is no <c>lm_head</c> module: the head is the input embedding itself.
/// </summary>
/// <remarks>
/// The model declares no adapter: choose layers by configuration, PEFT's defaults for Llama being one line,
/// <c>model.ApplyTargets(new PeftTargets(LlamaTargets.LoRA, new LoRAOptions(Rank: 8, Alpha: 16)))</c>
/// (<see cref="LlamaTargets"/>: LoRA, IA3, LayerNorm tuning and prompt tuning targets; docs/llama.md).
/// </remarks>
[Adaptable]
public sealed partial class LlamaForCausalLM : Module<Tensor, Tensor>
{
    private readonly LlamaModel model;
    private Module<Tensor, Tensor>? lm_head;

    /// <summary>Creates a randomly initialised model.</summary>
    /// <param name="config">Model sizes.</param>
    public LlamaForCausalLM(LlamaConfig config) : base(nameof(LlamaForCausalLM))
    {
        ArgumentNullException.ThrowIfNull(config);
        Config = config;
        model = new LlamaModel(config);
        if (!config.TieWordEmbeddings)
        {
            lm_head = Linear(config.HiddenSize, config.VocabSize, hasBias: false);
        }

        InitializePeft();
    }

    /// <summary>The sizes this model was built with.</summary>
    public LlamaConfig Config { get; }

    /// <summary>The decoder without the head.</summary>
    public LlamaModel Model => model;

    /// <summary>
    /// Builds a model from a Hugging Face directory (config.json + safetensors), strictly. The sizes in config.json are
    /// checked against the tensors in the weight files before the model is allocated.
    /// </summary>
    /// <param name="directory">The checkpoint directory.</param>
    /// <param name="options">Load options (default: strict).</param>
    /// <exception cref="CheckpointFormatException">The directory is malformed, config.json is not a supported Llama-style
    /// configuration, or a weight is NaN or infinite (the message names the file and the field or tensor).</exception>
    /// <exception cref="CheckpointMismatchException">The tensors do not fit the model config.json describes (each problem named).</exception>
    public static LlamaForCausalLM FromPretrained(string directory, CheckpointLoadOptions? options = null)
    {
        using var checkpoint = HfCheckpoint.Open(directory);
        var config = LlamaConfig.FromHf(checkpoint.Config);
        checkpoint.EnsureFits(config.ExpectedTensors(), options);
        var result = new LlamaForCausalLM(config);
        try
        {
            checkpoint.LoadInto(result, options);
        }
        catch
        {
            result.Dispose();
            throw;
        }

        result.eval();
        return result;
    }

    /// <summary>Logits [batch, time, vocab] for token ids [batch, time] (a full causal forward).</summary>
    /// <param name="ids">Token ids (int64).</param>
    public override Tensor forward(Tensor ids) => Forward(ids, null);

    /// <summary>Logits for <paramref name="ids"/>, the positions after those held by <paramref name="cache"/>, which it extends.</summary>
    /// <param name="ids">Token ids [batch, time] (int64).</param>
    /// <param name="cache">Key/value cache, or null for a full forward.</param>
    public Tensor Forward(Tensor ids, KvCache? cache)
    {
        using var scope = NewDisposeScope();
        var h = model.Forward(ids, cache);
        var logits = lm_head is null ? functional.linear(h, model.EmbedTokensWeight) : lm_head.call(h);
        return logits.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Continues <paramref name="ids"/> [batch, time] by up to <paramref name="maxNewTokens"/> tokens with the KV cache
    /// (the prompt runs once, then one position per step) and returns prompt plus new tokens [batch, time + n].
    /// Runs in eval mode without gradients; the model's training flag is restored afterwards.
    /// </summary>
    /// <param name="ids">Prompt token ids (int64, every row the same length).</param>
    /// <param name="maxNewTokens">Most tokens to add.</param>
    /// <param name="options">Greedy or sampling settings (default greedy).</param>
    public Tensor Generate(Tensor ids, int maxNewTokens, GenerationOptions? options = null)
    {
        options = CausalLmGeneration.Validate(ids, maxNewTokens, options);
        using var cache = new KvCache(Config.NumHiddenLayers);
        return CausalLmGeneration.Generate(this, next => Forward(next, cache), ids, maxNewTokens, options);
    }
}
