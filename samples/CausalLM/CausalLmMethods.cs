using Peft;
using Peft.Serialization;

namespace CausalLM;

/// <summary>
/// One way of adapting the causal LM (<c>--method</c>): how it is added to the stock model, saved in PEFT's layout and
/// loaded into a fresh model. A new method is one entry in <see cref="CausalLmMethods.All"/>.
/// </summary>
/// <param name="Name">The <c>--method</c> name.</param>
/// <param name="Apply">Adds the method to the model (the targets are the family's LoRA defaults or <c>--target-modules</c>);
/// returns a line describing what it added.</param>
/// <param name="Save">Writes the trained adapter to a directory (PEFT's layout), given the base checkpoint's path.</param>
/// <param name="Load">Loads a saved adapter into a fresh stock model.</param>
/// <param name="UsesTargets">Whether <c>--target-modules</c> applies.</param>
internal sealed record CausalLmMethod(string Name, Func<CausalLm, TargetModules, CausalLmOptions, string> Apply, Action<CausalLm, string, string> Save, Action<CausalLm, string> Load, bool UsesTargets)
{
    /// <summary>Whether the greedy continuation can run (false when the method needs inputs of one fixed length).</summary>
    public bool Generates { get; init; } = true;

    /// <summary>Per-parameter peak learning rates (<c>TrainingOptions.ParameterLearningRate</c>), or null for one rate.</summary>
    public Func<TorchSharp.torch.nn.Module, CausalLmOptions, Func<TorchSharp.Modules.Parameter, double?>?>? LearningRates { get; init; }
}

/// <summary>The methods the sample can train.</summary>
internal static class CausalLmMethods
{
    /// <summary>Prefix positions of the prefix-tuning method.</summary>
    public const int PrefixTokens = 20;

    public static IReadOnlyList<CausalLmMethod> All { get; } =
    [
        new("lora", (lm, targets, _) =>
            {
                var adapted = lm.Module.ApplyTargets(new PeftTargets(targets, new LoRAOptions(Rank: 8, Alpha: 16)));
                return $"target_modules {targets}: LoRA r=8 on {adapted.Count} layers ({string.Join(", ", adapted.Take(4))}{(adapted.Count > 4 ? ", ..." : "")})";
            },
            (lm, dir, baseDir) => lm.SaveAdapter(dir, new AdapterSaveOptions { BaseModelNameOrPath = baseDir, TaskType = "CAUSAL_LM" }),
            (lm, dir) => lm.LoadAdapter(dir),
            UsesTargets: true),
        new("prefix", (lm, _, _) =>
            {
                var prefixes = lm.Module.AddPrefixTuning(new PrefixTuningConfig(PrefixTokens, Projection: true, EncoderHiddenSize: 128));
                return $"prefix tuning: {PrefixTokens} key/value positions in each of {prefixes.Count} layers, through PEFT's MLP (width 128)";
            },
            (lm, dir, baseDir) => lm.Module.SavePrefixTuning(dir, baseModelNameOrPath: baseDir, taskType: "CAUSAL_LM"),
            (lm, dir) => lm.Module.LoadPrefixTuning(dir),
            UsesTargets: false),
        new("adaption", (lm, _, _) =>
            {
                // PEFT's AdaptionPromptConfig(adapter_len=10, adapter_layers=all): a prompt and a zero gate in each attention.
                int layers = TransformerBlocks.Find(lm.Module).Blocks.Count;
                var inserted = lm.Module.AddAdaptionPrompt(new AdaptionPromptConfig(AdapterLen: 10, AdapterLayers: layers));
                return $"adaption prompt: 10 tokens in {inserted.Count} attentions ({string.Join(", ", inserted.Take(2).Select(i => i.AttentionPath))}{(inserted.Count > 2 ? ", ..." : "")})";
            },
            (lm, dir, baseDir) => lm.Module.SaveAdaptionPrompt(dir, options: new AdapterSaveOptions { BaseModelNameOrPath = baseDir, TaskType = "CAUSAL_LM" }),
            (lm, dir) => lm.Module.LoadAdaptionPrompt(dir),
            UsesTargets: false),
        new("dept", (lm, _, options) =>
            {
                // DePT on the input embedding: every block has exactly --block-size tokens, which its table covers.
                var dept = new DePTOptions(VirtualTokens: 8, MaxLength: options.BlockSize, Rank: 8, Alpha: 8);
                lm.Module.ApplyTargets(new PeftTargets(lm.PromptTargets, dept));
                return $"DePT on {lm.PromptTargets}: {dept.VirtualTokens} prompt tokens, r {dept.Rank} table over {dept.MaxLength} positions (scale {dept.Scaling:F3}), table lr {options.TableLearningRate:E1}";
            },
            (lm, dir, baseDir) => lm.SaveAdapter(dir, new AdapterSaveOptions { BaseModelNameOrPath = baseDir, TaskType = "CAUSAL_LM" }),
            (lm, dir) => lm.LoadAdapter(dir),
            UsesTargets: false)
        {
            Generates = false,
            LearningRates = (model, options) => model.DePTLearningRates(options.TableLearningRate),
        },
        new("ptuning", (lm, _, _) =>
            {
                // P-tuning on the input embedding: PEFT's MLP prompt encoder (h = the embedding size, PEFT's default) makes
                // 8 virtual tokens; the saved file holds its output, which the fresh model loads as PEFT does (inference mode).
                var ptuning = new PTuningOptions(VirtualTokens: 8);
                lm.Module.ApplyTargets(new PeftTargets(lm.PromptTargets, ptuning));
                return $"P-tuning on {lm.PromptTargets}: {ptuning.VirtualTokens} virtual tokens from an MLP prompt encoder";
            },
            (lm, dir, baseDir) => lm.SaveAdapter(dir, new AdapterSaveOptions { BaseModelNameOrPath = baseDir, TaskType = "CAUSAL_LM" }),
            (lm, dir) => lm.LoadAdapter(dir),
            UsesTargets: false),
    ];

    /// <summary>The method named <paramref name="name"/>, or null.</summary>
    public static CausalLmMethod? Find(string name) => All.FirstOrDefault(m => string.Equals(m.Name, name, StringComparison.OrdinalIgnoreCase));
}
