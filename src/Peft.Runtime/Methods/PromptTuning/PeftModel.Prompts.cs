using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft;

public static partial class PeftModel
{
    /// <summary>
    /// The number of virtual tokens V the model's prompt layers currently prepend (0 when no prompt is active or
    /// adapters are disabled).
    /// </summary>
    /// <param name="root">The model.</param>
    /// <returns>V.</returns>
    /// <exception cref="PeftConfigurationException">Two prompt layers prepend different numbers of tokens.</exception>
    public static int VirtualTokenCount(this nn.Module root)
    {
        ArgumentNullException.ThrowIfNull(root);
        int? count = null;
        string? first = null;
        foreach (var (path, layer) in root.PromptEmbeddings())
        {
            int v = layer.VirtualTokenCount;
            if (v == 0)
            {
                continue;
            }

            if (count is int c && c != v)
            {
                throw new PeftConfigurationException(
                    $"Prompt layers '{first}' and '{path}' prepend {c} and {v} virtual tokens; masks and outputs cannot be adjusted for both. Use one prompt layer or equal VirtualTokens.",
                    layer.MemberName, layer.ActiveAdapter);
            }

            count = v;
            first = path;
        }

        return count ?? 0;
    }

    /// <summary>
    /// The one input length the model's live position-offset adapters require (DePT's <c>max_length</c>,
    /// <see cref="IPositionOffsetAdapter.Positions"/>), or null when none is live: pad or truncate every input to it.
    /// </summary>
    /// <param name="root">The model.</param>
    /// <returns>The length, or null.</returns>
    /// <exception cref="PeftConfigurationException">Two embedding layers require different lengths.</exception>
    public static int? RequiredInputLength(this nn.Module root)
    {
        ArgumentNullException.ThrowIfNull(root);
        int? length = null;
        string? first = null;
        foreach (var (path, layer) in root.PromptEmbeddings())
        {
            if (layer.RequiredInputLength is not int s) continue;
            if (length is int l && l != s)
            {
                throw new PeftConfigurationException(
                    $"Embedding layers '{first}' and '{path}' require inputs of {l} and {s} tokens; no input can have both lengths. Use one DePT layer or equal MaxLength.",
                    layer.MemberName, layer.ActiveAdapter);
            }

            length = s;
            first = path;
        }

        return length;
    }

    /// <summary>
    /// Prepends V ones to an attention mask <c>[B, T]</c> (or <c>[T]</c>) along its last dimension, as PEFT does for prompt
    /// tuning; the result has the mask's dtype and device. Without an active prompt it returns an alias of the mask.
    /// </summary>
    /// <param name="root">The model.</param>
    /// <param name="mask">The attention mask.</param>
    /// <returns>A new tensor <c>[B, V + T]</c>.</returns>
    public static Tensor ExtendAttentionMask(this nn.Module root, Tensor mask) =>
        Prepend(root, mask, ones: true, value: 1);

    /// <summary>
    /// Prepends V copies of <paramref name="ignoreIndex"/> to labels <c>[B, T]</c> (or <c>[T]</c>) along the last
    /// dimension, so the virtual positions carry no loss (PEFT pads labels with -100).
    /// </summary>
    /// <param name="root">The model.</param>
    /// <param name="labels">The labels.</param>
    /// <param name="ignoreIndex">The value the loss ignores.</param>
    /// <returns>A new tensor <c>[B, V + T]</c>.</returns>
    public static Tensor ExtendLabels(this nn.Module root, Tensor labels, long ignoreIndex = -100) =>
        Prepend(root, labels, ones: false, value: ignoreIndex);

    /// <summary>
    /// Drops the first V positions along dimension 1 of a hidden-state or logits tensor <c>[B, V + T, ...]</c>, leaving
    /// the outputs of the real tokens. Without an active prompt it returns an alias of the tensor.
    /// </summary>
    /// <param name="root">The model.</param>
    /// <param name="hidden">The model output.</param>
    /// <returns>A view <c>[B, T, ...]</c>.</returns>
    /// <exception cref="ArgumentException">The tensor has fewer than V positions on dimension 1.</exception>
    public static Tensor StripVirtualTokens(this nn.Module root, Tensor hidden)
    {
        ArgumentNullException.ThrowIfNull(hidden);
        int v = root.VirtualTokenCount();
        if (v == 0)
        {
            return hidden.alias();
        }

        if (hidden.Dimensions < 2 || hidden.shape[1] < v)
        {
            throw new ArgumentException(
                $"Expected a tensor [batch, {v} + T, ...] with the {v} virtual tokens on dimension 1, got shape [{string.Join(", ", hidden.shape)}].",
                nameof(hidden));
        }

        return hidden.narrow(1, v, hidden.shape[1] - v);
    }

    /// <summary>
    /// Initialises every prompt adapter (prompt tuning, DePT) that has an init text (<see cref="PromptTuningOptions.InitText"/>,
    /// <see cref="DePTOptions.InitText"/>) from the embeddings of that
    /// text's tokens (PEFT's TEXT init), via <see cref="InitializeFromTokenIds"/>.
    /// </summary>
    /// <param name="root">The model.</param>
    /// <param name="tokenize">Maps a text to token ids of the model's vocabulary.</param>
    /// <returns>The number of prompt adapters initialised.</returns>
    public static int InitializePromptsFromText(this nn.Module root, Func<string, IReadOnlyList<long>> tokenize)
    {
        ArgumentNullException.ThrowIfNull(root);
        ArgumentNullException.ThrowIfNull(tokenize);
        int count = 0;
        foreach (var (_, layer) in root.PromptEmbeddings())
        {
            foreach (var adapter in layer.Adapters.OfType<IPromptTable>().Cast<PeftAdapter>())
            {
                if (((IPromptTable)adapter).InitText is string text)
                {
                    layer.InitializeFromTokenIds(adapter.AdapterName, tokenize(text));
                    count++;
                }
            }
        }

        return count;
    }

    /// <summary>
    /// Initialises a prompt from token embeddings (PEFT's TEXT init): the ids are repeated or truncated to V and the
    /// base embedding rows of those ids are copied into <c>prompt_embeddings</c>.
    /// </summary>
    /// <param name="layer">The embedding layer.</param>
    /// <param name="adapterName">The prompt adapter to initialise.</param>
    /// <param name="tokenIds">Token ids of the init text (non-empty, each in [0, vocabulary)).</param>
    /// <exception cref="PeftConfigurationException">The adapter is unknown or not a prompt, or the ids are empty or out of range.</exception>
    public static void InitializeFromTokenIds(this AdaptedEmbedding layer, string adapterName, IReadOnlyList<long> tokenIds)
    {
        ArgumentNullException.ThrowIfNull(layer);
        ArgumentNullException.ThrowIfNull(tokenIds);
        var adapter = layer.GetAdapter(adapterName) as IPromptTable
            ?? throw new PeftConfigurationException($"Adapter '{adapterName}' on member '{layer.MemberName}' is not a prompt.", layer.MemberName, adapterName);
        if (tokenIds.Count == 0)
        {
            throw new PeftConfigurationException(
                $"Prompt adapter '{adapterName}' on member '{layer.MemberName}': the init text produced no token ids; use a non-empty InitText.",
                layer.MemberName, adapterName);
        }

        long vocabulary = layer.NumEmbeddings;
        var ids = new long[adapter.VirtualTokens];
        for (int i = 0; i < ids.Length; i++)
        {
            long id = tokenIds[i % tokenIds.Count];
            if (id < 0 || id >= vocabulary)
            {
                throw new PeftConfigurationException(
                    $"Prompt adapter '{adapterName}' on member '{layer.MemberName}': token id {id} is outside the vocabulary [0, {vocabulary}). Use the tokenizer that matches the embedding.",
                    layer.MemberName, adapterName);
            }

            ids[i] = id;
        }

        using var noGrad = torch.no_grad();
        using var index = torch.tensor(ids, dtype: ScalarType.Int64, device: layer.Weight.device);
        using var rows = layer.Weight.index_select(0, index);
        adapter.PromptEmbeddings.copy_(rows);
    }

    /// <summary>
    /// DePT's two learning rates as a <see cref="Training.TrainingOptions.ParameterLearningRate"/> value: the position tables
    /// (<c>lora_embedding_A/B</c>) of every DePT adapter of the model train with <paramref name="tableLearningRate"/>, every
    /// other parameter with the options' <see cref="Training.TrainingOptions.LearningRate"/> (the prompt's; the DePT paper uses
    /// about 3e-1 for the prompt and 1e-4 to 5e-3 for the table). Both follow the same schedule.
    /// </summary>
    /// <param name="root">The model, its DePT adapters created.</param>
    /// <param name="tableLearningRate">The tables' peak learning rate (finite, &gt; 0).</param>
    /// <returns>The per-parameter learning rate.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="tableLearningRate"/> is not a finite number &gt; 0.</exception>
    public static Func<Parameter, double?> DePTLearningRates(this nn.Module root, double tableLearningRate)
    {
        ArgumentNullException.ThrowIfNull(root);
        if (!double.IsFinite(tableLearningRate) || tableLearningRate <= 0)
            throw new ArgumentOutOfRangeException(nameof(tableLearningRate), tableLearningRate, "The table's learning rate must be a finite number > 0 (DePT uses 1e-4 to 5e-3).");
        var tables = new HashSet<Parameter>(
            root.PromptEmbeddings().SelectMany(e => e.Layer.Adapters.OfType<DePTAdapter>()).SelectMany(a => a.TableParameters),
            ReferenceEqualityComparer.Instance);
        return p => tables.Contains(p) ? tableLearningRate : null;
    }

    private static Tensor Prepend(nn.Module root, Tensor tensor, bool ones, long value)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        int v = root.VirtualTokenCount();
        if (v == 0)
        {
            return tensor.alias();
        }

        var shape = tensor.shape;
        if (shape.Length == 0)
        {
            throw new ArgumentException("Expected a tensor [batch, T] or [T], got a scalar.", nameof(tensor));
        }

        shape[^1] = v;
        using var prefix = ones
            ? torch.ones(shape, dtype: tensor.dtype, device: tensor.device)
            : torch.full(shape, value, dtype: tensor.dtype, device: tensor.device);
        return torch.cat(new[] { prefix, tensor }, shape.Length - 1);
    }
}
