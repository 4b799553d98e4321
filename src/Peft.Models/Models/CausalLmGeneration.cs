using Peft.Models.Llama;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Models;

/// <summary>
/// The generation loop and sampling rules shared by causal LMs with a KV cache: the prompt runs once, then one position
/// per step; greedy, or temperature → top-k → top-p (transformers' order and rules) with a seeded generator.
/// Used by <see cref="LlamaForCausalLM.Generate"/> and <see cref="Gpt2.Gpt2LMHeadModel.Generate"/>.
/// </summary>
internal static class CausalLmGeneration
{
    /// <summary>Checks the prompt shape and the sampling settings.</summary>
    public static GenerationOptions Validate(Tensor ids, int maxNewTokens, GenerationOptions? options)
    {
        ArgumentNullException.ThrowIfNull(ids);
        ArgumentOutOfRangeException.ThrowIfNegative(maxNewTokens);
        options ??= new GenerationOptions();
        if (ids.dim() != 2) throw new ArgumentException($"Expected token ids [batch, time], got {ids.dim()} dimension(s).", nameof(ids));
        if (!options.Greedy)
        {
            if (!(options.Temperature > 0)) throw new ArgumentOutOfRangeException(nameof(options), "Temperature must be positive.");
            if (options.TopK < 0) throw new ArgumentOutOfRangeException(nameof(options), "TopK must be 0 (off) or positive.");
            if (!(options.TopP > 0 && options.TopP <= 1)) throw new ArgumentOutOfRangeException(nameof(options), "TopP must be in (0, 1].");
        }
        return options;
    }

    /// <summary>
    /// Runs <paramref name="step"/> (logits [batch, time, vocab] for the new ids, extending the caller's cache) in eval
    /// mode without gradients and returns prompt + new tokens. The module's training flag is restored.
    /// </summary>
    public static Tensor Generate(nn.Module model, Func<Tensor, Tensor> step, Tensor ids, int maxNewTokens, GenerationOptions options)
    {
        bool wasTraining = model.training;
        model.eval();
        try
        {
            using var noGrad = no_grad();
            using var generator = options.Greedy ? null : new torch.Generator(options.Seed, ids.device);
            using var scope = NewDisposeScope();
            var all = ids.to_type(ScalarType.Int64);
            var next = all;
            Tensor? finished = options.EosTokenId is null ? null : zeros(ids.shape[0], dtype: ScalarType.Bool, device: ids.device);
            for (int i = 0; i < maxNewTokens; i++)
            {
                // Each step's logits and temporaries are freed with the step; only the ids carry over.
                using (var stepScope = NewDisposeScope())
                {
                    var logits = step(next).select(1, -1);
                    var token = options.Greedy ? logits.argmax(-1) : Sample(logits, options, generator!);
                    if (finished is not null)
                    {
                        // Rows that already ended keep producing the end token.
                        token = where(finished, full_like(token, options.EosTokenId!.Value), token);
                        finished = finished.logical_or(token.eq(options.EosTokenId!.Value)).MoveToOuterDisposeScope();
                    }

                    next = token.unsqueeze(1).MoveToOuterDisposeScope();
                    all = cat(new[] { all, next }, 1).MoveToOuterDisposeScope();
                }
                if (finished is not null && finished.all().item<bool>()) break;
            }

            return all.MoveToOuterDisposeScope();
        }
        finally
        {
            model.train(wasTraining);
        }
    }

    /// <summary>Draws one token per row from logits [batch, vocab] after temperature, top-k and top-p.</summary>
    public static Tensor Sample(Tensor logits, GenerationOptions options, torch.Generator generator)
    {
        using var scope = NewDisposeScope();
        var scores = logits.to_type(ScalarType.Float32) / options.Temperature;
        long vocab = scores.shape[^1];
        if (options.TopK > 0 && options.TopK < vocab)
        {
            var kth = scores.topk(options.TopK, dim: -1).values.narrow(-1, options.TopK - 1, 1);
            scores = scores.masked_fill(scores.lt(kth), float.NegativeInfinity);
        }

        if (options.TopP < 1.0)
        {
            // transformers' TopPLogitsWarper: sort ascending, drop tokens whose cumulative mass is <= 1 - top_p,
            // always keeping the most likely one.
            var (sorted, indices) = scores.sort(dim: -1, descending: false);
            var cumulative = functional.softmax(sorted, -1).cumsum(-1);
            var removeSorted = cumulative.le(1.0 - options.TopP);
            removeSorted.index_fill_(-1, tensor(new long[] { vocab - 1 }, device: scores.device), false);
            var remove = zeros_like(removeSorted).scatter(-1, indices, removeSorted);
            scores = scores.masked_fill(remove, float.NegativeInfinity);
        }

        var probabilities = functional.softmax(scores, -1);
        return multinomial(probabilities, 1, replacement: false, generator: generator).squeeze(-1).MoveToOuterDisposeScope();
    }
}
