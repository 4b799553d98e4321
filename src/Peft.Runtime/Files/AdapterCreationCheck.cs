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
        if (config.PeftType == "PROMPT_TUNING")
        {
            if (!reader.Contains(PromptKey))
            {
                throw new AdapterFormatException(configPath, "num_virtual_tokens",
                    $"a prompt adapter needs the tensor '{PromptKey}' in {reader.Path}, which has none; nothing was created");
            }
            var shape = reader.GetInfo(PromptKey).Shape;
            if (shape.Length != 2 || shape[0] != config.NumVirtualTokens || (config.TokenDim > 0 && shape[1] != config.TokenDim))
            {
                throw new AdapterFormatException(configPath, "num_virtual_tokens",
                    $"\"num_virtual_tokens\": {config.NumVirtualTokens} and \"token_dim\": {config.TokenDim} do not fit '{PromptKey}' [{string.Join(", ", shape)}] in {reader.Path} (expected [num_virtual_tokens, token_dim]); nothing was created");
            }
            return;
        }

        // LoRA, LoKr: no rank may exceed the largest dimension of any tensor in the file (each adapter tensor has the
        // rank as a dimension), which bounds what creating the adapter allocates.
        long largest = reader.Tensors.SelectMany(t => t.Shape).DefaultIfEmpty(0).Max();
        foreach (var (key, rank) in config.RankPattern.Select(p => ($"rank_pattern.{p.Key}", p.Value)).Prepend(("r", config.R)))
        {
            if (rank > largest)
            {
                throw new AdapterFormatException(configPath, key,
                    $"\"{key}\": {rank} is larger than every dimension of the tensors in {reader.Path} (at most {largest}), so it cannot be the rank of these adapter weights; nothing was created");
            }
        }
    }
}
