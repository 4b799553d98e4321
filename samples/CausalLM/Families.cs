using System.Globalization;
using Peft;
using Peft.Checkpoints;
using Peft.Models.Gpt2;
using Peft.Models.Llama;
using Peft.Serialization;
using Peft.Training;
using static TorchSharp.torch;

namespace CausalLM;

/// <summary>
/// The model families the sample adapts, behind one surface: a Llama-layout decoder (LoRA on q_proj/v_proj by default) or
/// GPT-2 (LoRA on the fused c_attn), PEFT's default targets of each family. A checkpoint's family comes from config.json's <c>model_type</c>.
/// </summary>
internal abstract class CausalLm : IDisposable
{
    public abstract nn.Module<Tensor, Tensor> Module { get; }

    public abstract int VocabSize { get; }

    public abstract int MaxPositions { get; }

    public abstract string Description { get; }

    /// <summary>PEFT's default LoRA targets of the family (<see cref="LlamaTargets.LoRA"/>, <see cref="Gpt2Targets.LoRA"/>).</summary>
    public abstract TargetModules DefaultLoRATargets { get; }

    /// <summary>The input embedding, where prompts (DePT) go.</summary>
    public abstract TargetModules PromptTargets { get; }

    public abstract Tensor Generate(Tensor ids, int maxNewTokens, GenerationOptions options);

    public abstract void SaveAdapter(string directory, AdapterSaveOptions options);

    public abstract void LoadAdapter(string directory);

    public void Dispose() => Module.Dispose();

    /// <summary>"gpt2" or "llama" from config.json's model_type (llama, mistral or absent: the Llama layout).</summary>
    public static string FamilyOf(string directory)
    {
        var type = HfConfig.Load(Path.Combine(directory, HfConfig.FileName)).ModelType;
        return type switch
        {
            "gpt2" => "gpt2",
            null or "llama" or "mistral" or "qwen2" => "llama",
            _ => throw new NotSupportedException($"{directory}/config.json has model_type \"{type}\"; this sample adapts gpt2 and llama-layout (llama, mistral, qwen2) checkpoints."),
        };
    }

    public static CausalLm FromPretrained(string directory) => FamilyOf(directory) switch
    {
        "gpt2" => new Gpt2(Gpt2LMHeadModel.FromPretrained(directory)),
        _ => new Llama(LlamaForCausalLM.FromPretrained(directory)),
    };

    /// <summary>The std of the tied embedding of the random checkpoints: 1/sqrt(hidden 64), so the head's logits have std about 1.</summary>
    public const double EmbeddingStd = 0.125;

    /// <summary>
    /// A small random checkpoint of <paramref name="family"/>, initialised as transformers does (normal, std 0.02;
    /// norms at 1, biases 0; GPT-2's residual projections std 0.02/sqrt(2·layers)) except the tied embedding
    /// (<see cref="EmbeddingStd"/>), written in two shards so the sharded load path runs too.
    /// </summary>
    public static string CreateRandomCheckpoint(string family, string directory, int vocabSize, int seed)
    {
        Seeding.SetSeed(seed);
        string description;
        long parameters;
        if (family == "gpt2")
        {
            var config = new Gpt2Config { VocabSize = vocabSize, NEmbd = 64, NLayer = 2, NHead = 4, NPositions = 256 };
            using var model = new Gpt2LMHeadModel(config);
            Initialise(model, name => name switch
            {
                "transformer.wte.weight" => EmbeddingStd,
                _ when name.EndsWith(".c_proj.weight", StringComparison.Ordinal) => 0.02 / Math.Sqrt(2 * config.NLayer),
                _ => 0.02,
            });
            parameters = BaseParameterCount(model);
            model.SavePretrained(directory, Gpt2LMHeadModel.SaveOptions(config) with { MaxShardSizeBytes = parameters * sizeof(float) / 2 + 1 });
            description = $"GPT-2 (vocab {vocabSize}, n_embd 64, 2 layers, 4 heads, n_inner 256, 256 positions, gelu_new, dropout 0.1, tied embeddings";
        }
        else
        {
            var config = new LlamaConfig
            {
                VocabSize = vocabSize, HiddenSize = 64, IntermediateSize = 128, NumHiddenLayers = 2, NumAttentionHeads = 4,
                NumKeyValueHeads = 2, MaxPositionEmbeddings = 256, TieWordEmbeddings = true,
            };
            using var model = new LlamaForCausalLM(config);
            Initialise(model, name => name == "model.embed_tokens.weight" ? EmbeddingStd : 0.02);
            parameters = BaseParameterCount(model);
            HfCheckpoint.Save(model, directory, config.ToHf(), new CheckpointSaveOptions { MaxShardSizeBytes = parameters * sizeof(float) / 2 + 1 });
            description = $"Llama (vocab {vocabSize}, hidden 64, intermediate 128, 2 layers, 4 heads / 2 kv heads, tied embeddings";
        }

        var files = Directory.GetFiles(directory).Select(Path.GetFileName).Order(StringComparer.Ordinal);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"no --checkpoint: created a tiny random {description}, {parameters:N0} parameters, init normal(0, 0.02), embeddings normal(0, {EmbeddingStd})) in {directory}; files: {string.Join(", ", files)}"));
        return directory;
    }

    private static bool IsAdapter(string name) => name.Contains(".lora_", StringComparison.Ordinal);

    private static long BaseParameterCount(nn.Module model) => model.named_parameters().Where(p => !IsAdapter(p.name)).Sum(p => p.parameter.numel());

    private static void Initialise(nn.Module model, Func<string, double> std)
    {
        using var _ = no_grad();
        foreach (var (name, parameter) in model.named_parameters())
        {
            if (IsAdapter(name)) continue; // adapter parameters are not part of the checkpoint
            bool norm = name.EndsWith("norm.weight", StringComparison.Ordinal) || name.Contains(".ln_", StringComparison.Ordinal);
            if (norm && name.EndsWith(".weight", StringComparison.Ordinal)) parameter.fill_(1.0);
            else if (name.EndsWith(".bias", StringComparison.Ordinal)) parameter.zero_();
            else parameter.normal_(0.0, std(name));
        }
    }

    private sealed class Llama(LlamaForCausalLM model) : CausalLm
    {
        public override nn.Module<Tensor, Tensor> Module => model;

        public override int VocabSize => model.Config.VocabSize;

        public override int MaxPositions => model.Config.MaxPositionEmbeddings;

        public override string Description => string.Create(CultureInfo.InvariantCulture,
            $"llama: vocab {model.Config.VocabSize}, hidden {model.Config.HiddenSize}, layers {model.Config.NumHiddenLayers}, heads {model.Config.NumAttentionHeads}/{model.Config.KeyValueHeads} kv, tied {model.Config.TieWordEmbeddings}");

        public override TargetModules DefaultLoRATargets => LlamaTargets.LoRA;

        public override TargetModules PromptTargets => LlamaTargets.PromptEmbedding;

        public override Tensor Generate(Tensor ids, int maxNewTokens, GenerationOptions options) => model.Generate(ids, maxNewTokens, options);

        public override void SaveAdapter(string directory, AdapterSaveOptions options) => AdapterFiles.Save(model, directory, options: options);

        public override void LoadAdapter(string directory) => AdapterFiles.Load(model, directory);
    }

    private sealed class Gpt2(Gpt2LMHeadModel model) : CausalLm
    {
        public override nn.Module<Tensor, Tensor> Module => model;

        public override int VocabSize => model.Config.VocabSize;

        public override int MaxPositions => model.Config.NPositions;

        public override string Description => string.Create(CultureInfo.InvariantCulture,
            $"gpt2: vocab {model.Config.VocabSize}, n_embd {model.Config.NEmbd}, layers {model.Config.NLayer}, heads {model.Config.NHead}, {model.Config.ActivationFunction}, tied {model.Config.TieWordEmbeddings}");

        public override TargetModules DefaultLoRATargets => Gpt2Targets.LoRA;

        public override TargetModules PromptTargets => Gpt2Targets.PromptEmbedding;

        public override Tensor Generate(Tensor ids, int maxNewTokens, GenerationOptions options) => model.Generate(ids, maxNewTokens, options);

        // The model says its c_attn layers are Conv1D in checkpoints (IFanInFanOutLayers), so the config says
        // fan_in_fan_out: true, as PEFT writes for GPT-2.
        public override void SaveAdapter(string directory, AdapterSaveOptions options) => AdapterFiles.Save(model, directory, options: options);

        public override void LoadAdapter(string directory) => AdapterFiles.Load(model, directory);
    }
}
