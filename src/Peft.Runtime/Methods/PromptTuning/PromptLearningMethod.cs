using Peft.Serialization;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// The part every prompt-learning method (prompt tuning, DePT, P-tuning) shares in PEFT's prompt-learning files: one prompt
/// on the model's input embedding, <c>num_virtual_tokens</c> (1 to <see cref="PromptTuningOptions.MaxVirtualTokens"/>),
/// <c>token_dim</c>, <c>num_transformer_submodules</c> 1 (encoder-decoder stacks are refused), and creating the adapter on
/// the one input embedding when a file is loaded into a model that has none yet. A method adds its own fields and tensors.
/// </summary>
public abstract class PromptLearningMethod : PeftMethod
{
    /// <inheritdoc />
    public sealed override PeftLayerKind LayerKinds => PeftLayerKind.Embedding;

    /// <inheritdoc />
    public sealed override bool IsPromptLearning => true;

    /// <summary>What the method's adapter is called in messages ("a prompt", "DePT", "P-tuning").</summary>
    protected abstract string AdapterDescription { get; }

    /// <summary>The tensors (PEFT names) and shapes a file must hold for <paramref name="options"/> on an embedding of
    /// <paramref name="embeddingDim"/> features.</summary>
    /// <param name="options">The options read from the file.</param>
    /// <param name="embeddingDim">The input embedding's width.</param>
    /// <returns>Name and shape of each tensor.</returns>
    protected abstract IEnumerable<(string Name, long[] Shape)> ExpectedShapes(PeftAdapterOptions options, long embeddingDim);

    /// <summary>The number of virtual tokens in the options (compared between a file and the model).</summary>
    /// <param name="options">The options.</param>
    /// <returns>The number of virtual tokens.</returns>
    protected abstract int VirtualTokensOf(PeftAdapterOptions options);

    /// <summary>
    /// Creates the method's adapter on the model's input embedding, after checking each tensor the file holds against
    /// <see cref="ExpectedShapes"/>. The input embedding is the model's one wrapped embedding layer or, when none is wrapped
    /// yet (a model family that declares no adapter), its one embedding member configuration targeting can reach, which is
    /// then wrapped as <c>model.ApplyTargets(new PeftTargets(name, options))</c> would (PEFT finds it with
    /// <c>get_input_embeddings()</c>).
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="adapterName">The adapter to create.</param>
    /// <param name="config">The config.</param>
    /// <param name="fileShapes">The weights file's tensor shapes.</param>
    /// <exception cref="AdapterFormatException">The model has not exactly one prompt-capable embedding, or a size disagrees.</exception>
    public sealed override void CreateFromConfig(nn.Module model, string adapterName, AdapterConfig config, IReadOnlyDictionary<string, long[]> fileShapes)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(fileShapes);
        var options = ReadOptions(config, null);
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
        foreach (var (name, expected) in ExpectedShapes(options, dim))
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

    /// <inheritdoc />
    /// <remarks>The prompt-learning fields must agree; a method with more settings adds its own after these.</remarks>
    public override IEnumerable<string> SettingMismatches(string path, PeftAdapterOptions fromFile, PeftAdapterOptions inModel)
    {
        ArgumentNullException.ThrowIfNull(fromFile);
        ArgumentNullException.ThrowIfNull(inModel);
        if (inModel.GetType() != fromFile.GetType()) yield break;
        int file = VirtualTokensOf(fromFile), model = VirtualTokensOf(inModel);
        if (file != model) yield return $"{path}: num_virtual_tokens is {file} in the config, {model} in the model";
    }

    /// <summary>Reads the prompt-learning fields every method shares: <c>num_virtual_tokens</c> and
    /// <c>num_transformer_submodules</c>.</summary>
    /// <param name="config">The config.</param>
    /// <returns>The number of virtual tokens.</returns>
    /// <exception cref="AdapterFormatException">A field is missing or out of range (named).</exception>
    protected static int ReadVirtualTokens(AdapterConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        int tokens = config.GetInt("num_virtual_tokens", 0);
        if (tokens <= 0 || tokens > PromptTuningOptions.MaxVirtualTokens)
            throw new AdapterFormatException($"{config.Source}: \"num_virtual_tokens\" must be an integer in [1, {PromptTuningOptions.MaxVirtualTokens}], found {config.Raw["num_virtual_tokens"]?.ToJsonString() ?? "nothing"}.");
        if (config.GetInt("num_transformer_submodules", 1) != 1)
            throw config.Unsupported("num_transformer_submodules", "only 1 is (encoder-decoder models prepend a prompt to each stack).");
        return tokens;
    }

    /// <summary>The adapter being written, after checking it is one prompt (PEFT's format holds one per adapter), with the
    /// prompt-learning fields written: <c>num_virtual_tokens</c>, <c>token_dim</c>, <c>num_transformer_submodules</c> 1,
    /// <c>num_attention_heads</c> and <c>num_layers</c> null.</summary>
    /// <typeparam name="TAdapter">The method's adapter type.</typeparam>
    /// <param name="writer">The config writer.</param>
    /// <param name="virtualTokens">The adapter's number of virtual tokens.</param>
    /// <returns>The adapter.</returns>
    /// <exception cref="PeftConfigurationException">The adapter is on more than one embedding.</exception>
    protected TAdapter WritePromptFields<TAdapter>(AdapterConfigWriter writer, Func<TAdapter, int> virtualTokens) where TAdapter : PeftAdapter
    {
        ArgumentNullException.ThrowIfNull(writer);
        ArgumentNullException.ThrowIfNull(virtualTokens);
        if (writer.Layers.Count > 1)
        {
            throw new PeftConfigurationException(
                $"Adapter '{writer.AdapterName}' is {AdapterDescription} on {writer.Layers.Count} embeddings ({string.Join(", ", writer.Layers.Select(l => l.Path))}); PEFT's format holds one prompt per adapter.",
                writer.Layers[1].Path, writer.AdapterName);
        }

        var adapter = (TAdapter)writer.Layers[0].Adapter;
        writer.Fields["num_virtual_tokens"] = virtualTokens(adapter);
        writer.Fields["token_dim"] = adapter.OutFeatures;
        writer.Fields["num_transformer_submodules"] = 1;
        writer.Fields["num_attention_heads"] = null;
        writer.Fields["num_layers"] = null;
        return adapter;
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
