namespace Peft.Serialization;

/// <summary>
/// Before <see cref="AdapterFiles.Load"/> creates a new adapter from <c>adapter_config.json</c>, checks the sizes the
/// config asks for against the tensors actually in <c>adapter_model.safetensors</c>, so a damaged config
/// (<c>num_virtual_tokens: 100000000</c>, <c>r: 2000000000</c>) fails with an <see cref="AdapterFormatException"/> instead
/// of allocating gigabytes first.
/// </summary>
internal static class AdapterCreationCheck
{
    /// <summary>PEFT's key of a prompt-tuning adapter's embeddings.</summary>
    private const string PromptKey = "prompt_embeddings";

    internal static void EnsureFits(SafetensorsReader reader, AdapterConfig config, string configPath)
    {
        if (PeftMethods.ForConfig(config).IsPromptLearning)
        {
            int tokens = config.GetInt("num_virtual_tokens", 0);
            int tokenDim = config.GetInt("token_dim", 0);
            if (!reader.Contains(PromptKey))
            {
                throw new AdapterFormatException(configPath, "num_virtual_tokens",
                    $"a prompt adapter needs the tensor '{PromptKey}' in {reader.Path}, which has none; nothing was created");
            }
            var shape = reader.GetInfo(PromptKey).Shape;
            if (shape.Length != 2 || shape[0] != tokens || (tokenDim > 0 && shape[1] != tokenDim))
            {
                throw new AdapterFormatException(configPath, "num_virtual_tokens",
                    $"\"num_virtual_tokens\": {tokens} and \"token_dim\": {tokenDim} do not fit '{PromptKey}' [{string.Join(", ", shape)}] in {reader.Path} (expected [num_virtual_tokens, token_dim]); nothing was created");
            }
            return;
        }

        // Methods with a rank (LoRA, DoRA, LoKr, ...): no rank may exceed the largest dimension of any tensor in the file
        // (each of their tensors has the rank as a dimension), which bounds what creating the adapter allocates.
        if (!config.Raw.ContainsKey("r")) return;
        long largest = reader.Tensors.SelectMany(t => t.Shape).DefaultIfEmpty(0).Max();
        foreach (var (key, rank) in config.RankPattern.Select(p => ($"rank_pattern.{p.Key}", p.Value)).Prepend(("r", config.GetInt("r", 8))))
        {
            if (rank > largest)
            {
                throw new AdapterFormatException(configPath, key,
                    $"\"{key}\": {rank} is larger than every dimension of the tensors in {reader.Path} (at most {largest}), so it cannot be the rank of these adapter weights; nothing was created");
            }
        }
    }
}
