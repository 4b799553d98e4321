using Peft;
using Peft.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Sentiment;

/// <summary>
/// What a method that trains selected entries of the encoder's own weights (ID³, SPT) adds to a run: a training callback
/// (its masks), the weights to hand to the trainer besides the head, and whatever owns them.
/// </summary>
/// <param name="Callback">The callback to register (it zeroes masked gradients and keeps masked entries exact).</param>
/// <param name="Parameters">The encoder weights it trains (entries of them), besides the head.</param>
/// <param name="Owner">Disposed at the end of the run.</param>
/// <param name="TrainedEntries">How many entries of <paramref name="Parameters"/> train at most (the budget), for the table's count.</param>
public sealed record SelectiveTraining(ITrainingCallback Callback, IReadOnlyList<Parameter> Parameters, IDisposable Owner, long TrainedEntries);

/// <summary>Builds a <see cref="SelectiveTraining"/> once the run knows its length and data.</summary>
/// <param name="classifier">The classifier (encoder frozen, head trainable).</param>
/// <param name="totalSteps">The run's training steps.</param>
/// <param name="batchLoss">The training loss of batch <c>i</c> of the first epoch (with gradients), for methods that
/// measure sensitivities before training.</param>
/// <returns>The callback and weights.</returns>
public delegate SelectiveTraining SelectiveFactory(SentimentClassifier classifier, int totalSteps, Func<int, Tensor> batchLoss);

/// <summary>The selective methods' settings on the USE-lite encoder.</summary>
public static class SentimentSelective
{
    /// <summary>The share of the encoder's projection entries a selective method trains (1%).</summary>
    public const double BudgetShare = 0.01;

    /// <summary>The encoder's weight matrices (every 2-D weight but the embedding tables), by parameter name.</summary>
    /// <param name="classifier">The classifier.</param>
    public static IReadOnlyList<string> Matrices(SentimentClassifier classifier)
    {
        ArgumentNullException.ThrowIfNull(classifier);
        return classifier.named_parameters()
            .Where(p => p.name.StartsWith("encoder.", StringComparison.Ordinal) && p.parameter.dim() == 2 && !p.name.Contains("embed", StringComparison.OrdinalIgnoreCase))
            .Select(p => p.name)
            .ToArray();
    }

    /// <summary>ID³ on the encoder's matrices: 1% of their entries, reached in 10 unmasking steps spread over the first
    /// half of the run, 10% of each step's entries drawn at random.</summary>
    /// <param name="classifier">The classifier.</param>
    /// <param name="totalSteps">The run's steps.</param>
    /// <param name="batchLoss">Not used (ID³ ranks entries from the training gradients as it goes).</param>
    public static SelectiveTraining Id3(SentimentClassifier classifier, int totalSteps, Func<int, Tensor> batchLoss)
    {
        ArgumentNullException.ThrowIfNull(classifier);
        var names = Matrices(classifier);
        var parameters = classifier.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        long entries = names.Sum(n => parameters[n].numel());
        const int unmaskingSteps = 10;
        int interval = Math.Max(1, totalSteps / (2 * unmaskingSteps));
        var options = new Id3Options((long)(entries * BudgetShare), unmaskingSteps, interval, Seed: 1);
        var id3 = new Id3Unmasking(classifier, names, options);
        return new SelectiveTraining(id3, id3.Parameters, id3, options.Budget);
    }
}
