using Peft.Serialization;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// Prompt tuning (<see cref="PromptTuneAttribute"/>) in Hugging Face PEFT's prompt-learning format: <c>peft_type</c>
/// "PROMPT_TUNING", one tensor <c>prompt_embeddings</c> <c>[num_virtual_tokens, token_dim]</c>, config fields
/// <c>num_virtual_tokens</c>, <c>token_dim</c>, <c>num_transformer_submodules</c>, <c>prompt_tuning_init</c>,
/// <c>prompt_tuning_init_text</c>, <c>tokenizer_name_or_path</c>.
/// </summary>
public sealed class PromptTuningMethod : PeftMethod
{
    /// <summary>The registered instance.</summary>
    public static PromptTuningMethod Instance { get; } = new();

    private static readonly string[] s_tensorNames = { PromptTuningAdapter.PromptEmbeddingsName };

    private PromptTuningMethod()
    {
    }

    /// <inheritdoc />
    public override string Name => "PromptTune";

    /// <inheritdoc />
    public override string PeftType => "PROMPT_TUNING";

    /// <inheritdoc />
    public override PeftLayerKind LayerKinds => PeftLayerKind.Embedding;

    /// <inheritdoc />
    public override Type AttributeType => typeof(PromptTuneAttribute);

    /// <inheritdoc />
    public override Type OptionsType => typeof(PromptTuningOptions);

    /// <inheritdoc />
    public override bool IsPromptLearning => true;

    /// <inheritdoc />
    public override IReadOnlyList<string> TensorNames => s_tensorNames;

    /// <inheritdoc />
    public override PeftAdapterOptions ReadOptions(AdapterConfig config, string? modulePath)
    {
        ArgumentNullException.ThrowIfNull(config);
        int tokens = config.GetInt("num_virtual_tokens", 0);
        if (tokens <= 0 || tokens > PromptTuningOptions.MaxVirtualTokens)
            throw new AdapterFormatException($"{config.Source}: \"num_virtual_tokens\" must be an integer in [1, {PromptTuningOptions.MaxVirtualTokens}], found {config.Raw["num_virtual_tokens"]?.ToJsonString() ?? "nothing"}.");
        int submodules = config.GetInt("num_transformer_submodules", 1);
        if (submodules != 1)
            throw config.Unsupported("num_transformer_submodules", "only 1 is (encoder-decoder models prepend a prompt to each stack).");
        return new PromptTuningOptions(tokens, config.GetString("prompt_tuning_init_text"));
    }

    /// <inheritdoc />
    public override void WriteConfig(AdapterConfigWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        if (writer.Layers.Count > 1)
        {
            throw new PeftConfigurationException(
                $"Adapter '{writer.AdapterName}' is a prompt on {writer.Layers.Count} embeddings ({string.Join(", ", writer.Layers.Select(l => l.Path))}); PEFT's format holds one prompt per adapter.",
                writer.Layers[1].Path, writer.AdapterName);
        }

        var adapter = (PromptTuningAdapter)writer.Layers[0].Adapter;
        string? initText = adapter.Options.InitText;
        bool text = initText is not null && writer.TokenizerNameOrPath is not null;
        writer.Fields["num_virtual_tokens"] = adapter.VirtualTokens;
        writer.Fields["token_dim"] = adapter.EmbeddingDim;
        writer.Fields["num_transformer_submodules"] = 1;
        writer.Fields["num_attention_heads"] = null;
        writer.Fields["num_layers"] = null;
        writer.Fields["prompt_tuning_init"] = text ? "TEXT" : "RANDOM";
        writer.Fields["prompt_tuning_init_text"] = initText;
        writer.Fields["tokenizer_name_or_path"] = text ? writer.TokenizerNameOrPath : null;
        writer.Fields["tokenizer_kwargs"] = null;
    }

    /// <inheritdoc />
    public override IEnumerable<string> SettingMismatches(string path, PeftAdapterOptions fromFile, PeftAdapterOptions inModel)
    {
        var file = (PromptTuningOptions)fromFile;
        if (inModel is PromptTuningOptions model && model.VirtualTokens != file.VirtualTokens)
        {
            yield return $"{path}: num_virtual_tokens is {file.VirtualTokens} in the config, {model.VirtualTokens} in the model";
        }
    }

    /// <summary>
    /// Creates the prompt on the model's input embedding, after checking the file's prompt has the configured size. The
    /// input embedding is the model's one wrapped embedding layer or, when none is wrapped yet (a model family that
    /// declares no adapter), its one embedding member configuration targeting can reach, which is then wrapped as
    /// <c>model.ApplyTargets(new PeftTargets(name, options))</c> would (PEFT finds it with <c>get_input_embeddings()</c>).
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="adapterName">The adapter to create.</param>
    /// <param name="config">The config.</param>
    /// <param name="fileShapes">The weights file's tensor shapes.</param>
    /// <exception cref="AdapterFormatException">The model has not exactly one prompt-capable embedding, or the sizes disagree.</exception>
    public override void CreateFromConfig(nn.Module model, string adapterName, AdapterConfig config, IReadOnlyDictionary<string, long[]> fileShapes)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(fileShapes);
        var options = (PromptTuningOptions)ReadOptions(config, null);
        CreateOnInputEmbedding(model, adapterName, config, options, dim => new[] { (PromptTuningAdapter.PromptEmbeddingsName, new long[] { options.VirtualTokens, dim }) }, fileShapes);
    }

    /// <summary>
    /// Creates a prompt-learning adapter on the model's one input embedding (its one wrapped embedding, or the one embedding
    /// member configuration targeting can reach, then wrapped), after checking each tensor the file holds against the shape the
    /// options and the embedding size call for. Shared by the prompt-learning methods (prompt tuning, DePT).
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="adapterName">The adapter to create.</param>
    /// <param name="config">The config (for messages).</param>
    /// <param name="options">The options read from it.</param>
    /// <param name="expectedShapes">The tensors (PEFT names) and shapes the adapter has for a given embedding size.</param>
    /// <param name="fileShapes">The weights file's tensor shapes.</param>
    /// <exception cref="AdapterFormatException">The model has not exactly one prompt-capable embedding, or a size disagrees.</exception>
    internal static void CreateOnInputEmbedding(nn.Module model, string adapterName, AdapterConfig config, PeftAdapterOptions options,
        Func<long, IEnumerable<(string Name, long[] Shape)>> expectedShapes, IReadOnlyDictionary<string, long[]> fileShapes)
    {
        var embeddings = model.PromptEmbeddings().Select(e => (e.Path, Module: (nn.Module)e.Layer)).ToList();
        if (embeddings.Count == 0)
        {
            embeddings = TargetableEmbeddings(model);
        }

        if (embeddings.Count != 1)
        {
            throw new AdapterFormatException(
                $"{config.Source}: loading a new prompt adapter '{adapterName}' needs exactly one input embedding in the model (a prompt-learning embedding such as [PromptTune], " +
                $"or an embedding member of an [Adaptable] class); found {embeddings.Count}{(embeddings.Count > 1 ? ": " + string.Join(", ", embeddings.Select(e => e.Path)) : string.Empty)}.");
        }

        var (path, module) = embeddings[0];
        long dim = PeftLayers.InfoOf(module, path).OutFeatures;
        foreach (var (name, expected) in expectedShapes(dim))
        {
            if (fileShapes.TryGetValue(name, out var shape) && !shape.SequenceEqual(expected))
            {
                throw new AdapterFormatException(
                    $"{config.Source}: the config and the model's embedding size {dim} call for {name} [{string.Join(", ", expected)}], " +
                    $"but the weights file holds [{string.Join(", ", shape)}]; nothing was loaded.");
            }
        }

        if (module is AdaptedLayer layer)
        {
            layer.WithAdapter(adapterName, options);
            return;
        }

        try
        {
            model.ApplyTargets(new PeftTargets(TargetModules.Regex(System.Text.RegularExpressions.Regex.Escape(path)), options) { AdapterName = adapterName });
        }
        catch (PeftConfigurationException ex)
        {
            throw new AdapterFormatException($"{config.Source}: creating prompt adapter '{adapterName}' on '{path}' failed: {ex.Message}", ex);
        }
    }

    /// <summary>The embedding members of generated classes that configuration targeting can wrap, with their paths.</summary>
    private static List<(string Path, nn.Module Module)> TargetableEmbeddings(nn.Module model)
    {
        var result = new List<(string, nn.Module)>();
        foreach (var node in ModuleTree.Walk(model))
        {
            if (node.Parent is IPeftTargetable owner
                && PeftLayers.KindOf(node.Module) == PeftLayerKind.Embedding
                && owner.PeftTargetMembers.Any(m => m.Name == node.Name && m.IsTargetable))
            {
                result.Add((node.Path, node.Module));
            }
        }

        return result;
    }
}
