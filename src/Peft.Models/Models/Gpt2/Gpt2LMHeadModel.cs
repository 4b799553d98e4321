using Peft.Checkpoints;
using Peft.Models.Llama;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Models.Gpt2;

/// <summary>
/// GPT-2 with a language-modelling head, whose state-dict names are transformers' <c>GPT2LMHeadModel</c> keys
/// (<c>transformer.wte.weight</c>, <c>transformer.wpe.weight</c>, <c>transformer.h.0.ln_1.weight</c>,
/// <c>transformer.h.0.attn.c_attn.weight</c>, ..., <c>transformer.ln_f.bias</c>), so adapter keys read as PEFT's
/// (<c>base_model.model.transformer.h.0.attn.c_attn.lora_A.weight</c>). The head is tied to <c>transformer.wte</c>
/// (no <c>lm_head</c> module) unless <c>tie_word_embeddings</c> is false.
/// </summary>
/// <remarks>
/// transformers' GPT-2 projections are <c>Conv1D</c> modules whose weights are stored [in, out]; this model uses
/// <c>Linear</c> ([out, in]) so LoRA, merging and export behave as for any linear layer. <see cref="FromPretrained"/>
/// and <see cref="SavePretrained"/> transpose those four weights per block (<see cref="IsConv1DWeight"/>), so files
/// stay in transformers' layout.
/// <para>The model declares no adapter: choose layers by configuration, PEFT's default for GPT-2 being one line,
/// <c>model.ApplyTargets(new PeftTargets(Gpt2Targets.LoRA, new LoRAOptions(Rank: 8, Alpha: 16)))</c>
/// (<see cref="Gpt2Targets"/>; docs/gpt2.md).</para>
/// </remarks>
[Adaptable]
public sealed partial class Gpt2LMHeadModel : Module<Tensor, Tensor>, IFanInFanOutLayers
{
    private readonly Gpt2Model transformer;
    private Module<Tensor, Tensor>? lm_head;

    /// <summary>Creates a randomly initialised model (TorchSharp's default init; load a checkpoint for real weights).</summary>
    /// <param name="config">Model sizes.</param>
    public Gpt2LMHeadModel(Gpt2Config config) : base(nameof(Gpt2LMHeadModel))
    {
        ArgumentNullException.ThrowIfNull(config);
        Config = config;
        transformer = new Gpt2Model(config);
        if (!config.TieWordEmbeddings)
        {
            lm_head = Linear(config.NEmbd, config.VocabSize, hasBias: false);
        }

        InitializePeft();
    }

    /// <summary>The sizes this model was built with.</summary>
    public Gpt2Config Config { get; }

    /// <summary>The decoder without the head.</summary>
    public Gpt2Model Transformer => transformer;

    /// <summary>
    /// Whether model name <paramref name="modelName"/> is the weight of one of transformers' <c>Conv1D</c> projections
    /// (<c>attn.c_attn</c>, <c>attn.c_proj</c>, <c>mlp.c_fc</c>, <c>mlp.c_proj</c>), which checkpoints store [in, out].
    /// Biases are the same in both layouts.
    /// </summary>
    /// <param name="modelName">A state-dict name of this model.</param>
    public static bool IsConv1DWeight(string modelName)
    {
        ArgumentNullException.ThrowIfNull(modelName);
        return modelName.EndsWith(".attn.c_attn.weight", StringComparison.Ordinal)
            || modelName.EndsWith(".attn.c_proj.weight", StringComparison.Ordinal)
            || modelName.EndsWith(".mlp.c_fc.weight", StringComparison.Ordinal)
            || modelName.EndsWith(".mlp.c_proj.weight", StringComparison.Ordinal);
    }

    /// <inheritdoc />
    /// <remarks>GPT-2's <c>attn.c_attn</c>, <c>attn.c_proj</c>, <c>mlp.c_fc</c> and <c>mlp.c_proj</c> (<see cref="IsConv1DWeight"/>): adapter
    /// files for them say <c>fan_in_fan_out: true</c>, as PEFT's do.</remarks>
    public bool IsFanInFanOut(string layerPath) => IsConv1DWeight(layerPath + ".weight");

    /// <summary>
    /// Maps a checkpoint tensor name to this model's name: names without the <c>transformer.</c> prefix (a
    /// <c>GPT2Model</c> checkpoint such as openai-community/gpt2's <c>h.0.attn.c_attn.weight</c>, <c>wte.weight</c>)
    /// get it; the non-persistent causal-mask buffers <c>attn.bias</c> and <c>attn.masked_bias</c> of older
    /// checkpoints are skipped (<see langword="null"/>), as transformers ignores them; with tied embeddings a stored
    /// <c>lm_head.weight</c> is skipped too (transformers ties it to <c>wte</c>).
    /// </summary>
    /// <param name="checkpointName">A tensor name as in the checkpoint.</param>
    /// <param name="tied">Whether the head is tied to the token embedding.</param>
    /// <returns>The model name, or <see langword="null"/> to skip the tensor.</returns>
    public static string? MapCheckpointName(string checkpointName, bool tied)
    {
        ArgumentNullException.ThrowIfNull(checkpointName);
        if (checkpointName.EndsWith(".attn.bias", StringComparison.Ordinal) || checkpointName.EndsWith(".attn.masked_bias", StringComparison.Ordinal))
            return null;
        if (checkpointName == "lm_head.weight") return tied ? null : checkpointName;
        return checkpointName.StartsWith("transformer.", StringComparison.Ordinal) ? checkpointName : "transformer." + checkpointName;
    }

    /// <summary>
    /// The <see cref="HfCheckpoint.LoadInto"/> options for a GPT-2 checkpoint: both key forms (<see cref="MapCheckpointName"/>),
    /// Conv1D weights transposed (<see cref="IsConv1DWeight"/>), the head tied to <c>transformer.wte.weight</c> as
    /// <paramref name="config"/> says, strict. Adjust with <c>with { Strict = false }</c> and pass to <see cref="FromPretrained"/>.
    /// </summary>
    /// <param name="config">The model's configuration.</param>
    public static CheckpointLoadOptions LoadOptions(Gpt2Config config)
    {
        ArgumentNullException.ThrowIfNull(config);
        bool tied = config.TieWordEmbeddings;
        return new CheckpointLoadOptions
        {
            Rename = name => MapCheckpointName(name, tied),
            TransposedInCheckpoint = IsConv1DWeight,
            TieWordEmbeddings = tied,
            InputEmbeddingName = "transformer.wte.weight",
        };
    }

    /// <summary>
    /// The <see cref="HfCheckpoint.Save"/> options that write transformers' <c>GPT2LMHeadModel</c> layout: Conv1D weights
    /// transposed back to [in, out], names with the <c>transformer.</c> prefix, no <c>lm_head.weight</c> when tied.
    /// </summary>
    /// <param name="config">The model's configuration.</param>
    public static CheckpointSaveOptions SaveOptions(Gpt2Config config)
    {
        ArgumentNullException.ThrowIfNull(config);
        return new CheckpointSaveOptions
        {
            TransposedInCheckpoint = IsConv1DWeight,
            TieWordEmbeddings = config.TieWordEmbeddings,
            InputEmbeddingName = "transformer.wte.weight",
        };
    }

    /// <summary>
    /// Builds a model from a Hugging Face GPT-2 directory (config.json + safetensors, single or sharded), strictly:
    /// missing, unexpected and mis-shaped tensors are reported by name and nothing is loaded.
    /// </summary>
    /// <param name="directory">The checkpoint directory.</param>
    /// <param name="options">Load options; <see langword="null"/> for <see cref="LoadOptions"/> of the directory's config.</param>
    /// <exception cref="CheckpointFormatException">The directory is malformed, config.json is not a supported GPT-2
    /// configuration, or a weight is NaN or infinite (the message names the file and the field or tensor).</exception>
    /// <exception cref="CheckpointMismatchException">The tensors do not fit (each problem named); checked against the sizes
    /// in config.json before the model is allocated.</exception>
    public static Gpt2LMHeadModel FromPretrained(string directory, CheckpointLoadOptions? options = null)
    {
        using var checkpoint = HfCheckpoint.Open(directory);
        var config = Gpt2Config.FromHf(checkpoint.Config);
        options ??= LoadOptions(config);
        checkpoint.EnsureFits(config.ExpectedTensors(), options);
        var result = new Gpt2LMHeadModel(config);
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

    /// <summary>
    /// Writes the model (base weights; call <c>Merge()</c> first to export a fine-tuned model) in transformers'
    /// <c>GPT2LMHeadModel</c> layout with <see cref="Gpt2Config.ToHf"/> as config.json.
    /// </summary>
    /// <param name="directory">The destination directory.</param>
    /// <param name="options">Save options; <see langword="null"/> for <see cref="SaveOptions"/>. Keep its
    /// <see cref="CheckpointSaveOptions.TransposedInCheckpoint"/> when adjusting it (<c>with { DType = ... }</c>).</param>
    public void SavePretrained(string directory, CheckpointSaveOptions? options = null)
        => HfCheckpoint.Save(this, directory, Config.ToHf(), options ?? SaveOptions(Config));

    /// <summary>Logits [batch, time, vocab] for token ids [batch, time] (a full causal forward).</summary>
    /// <param name="ids">Token ids (int64).</param>
    public override Tensor forward(Tensor ids) => Forward(ids, null);

    /// <summary>Logits for <paramref name="ids"/>, the positions after those held by <paramref name="cache"/>, which it extends.</summary>
    /// <param name="ids">Token ids [batch, time] (int64).</param>
    /// <param name="cache">Key/value cache, or null for a full forward.</param>
    public Tensor Forward(Tensor ids, KvCache? cache)
    {
        using var scope = NewDisposeScope();
        var h = transformer.Forward(ids, cache);
        var logits = lm_head is null ? functional.linear(h, transformer.WteWeight) : lm_head.call(h);
        return logits.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Continues <paramref name="ids"/> [batch, time] by up to <paramref name="maxNewTokens"/> tokens with the KV cache
    /// (the prompt runs once, then one position per step) and returns prompt plus new tokens [batch, time + n].
    /// Runs in eval mode without gradients; the model's training flag is restored afterwards. The options and
    /// sampling rules are <see cref="LlamaForCausalLM.Generate"/>'s (one shared loop).
    /// </summary>
    /// <param name="ids">Prompt token ids (int64, every row the same length).</param>
    /// <param name="maxNewTokens">Most tokens to add (prompt + new must fit in <c>n_positions</c>).</param>
    /// <param name="options">Greedy or sampling settings (default greedy).</param>
    public Tensor Generate(Tensor ids, int maxNewTokens, GenerationOptions? options = null)
    {
        options = CausalLmGeneration.Validate(ids, maxNewTokens, options);
        using var cache = new KvCache(Config.NLayer);
        return CausalLmGeneration.Generate(this, next => Forward(next, cache), ids, maxNewTokens, options);
    }
}
