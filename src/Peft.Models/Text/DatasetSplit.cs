namespace Peft.Text;

/// <summary>A dataset divided into a training part and a held-out validation part.</summary>
/// <typeparam name="T">The example type.</typeparam>
/// <param name="Train">The training examples.</param>
/// <param name="Validation">The validation examples.</param>
public sealed record DatasetSplit<T>(IReadOnlyList<T> Train, IReadOnlyList<T> Validation);

/// <summary>Seeded, reproducible train/validation splits.</summary>
public static class DatasetSplit
{
    /// <summary>
    /// Shuffles <paramref name="items"/> with <paramref name="seed"/> and puts <c>round(count * validationFraction)</c> of them
    /// (at least one when the fraction is positive and there are two or more items, and never all of them) in the
    /// validation part. The same seed and input always give the same split.
    /// </summary>
    /// <typeparam name="T">The example type.</typeparam>
    /// <param name="items">The dataset (not modified).</param>
    /// <param name="validationFraction">The share held out, in [0, 1).</param>
    /// <param name="seed">The shuffle seed.</param>
    public static DatasetSplit<T> TrainValidation<T>(IReadOnlyList<T> items, double validationFraction, int seed)
    {
        ArgumentNullException.ThrowIfNull(items);
        if (!(validationFraction >= 0 && validationFraction < 1))
            throw new ArgumentOutOfRangeException(nameof(validationFraction), validationFraction, "The validation fraction must be in [0, 1).");
        int[] order = Enumerable.Range(0, items.Count).ToArray();
        Shuffle(order, seed);
        int validation = (int)Math.Round(items.Count * validationFraction, MidpointRounding.AwayFromZero);
        if (validationFraction > 0 && items.Count >= 2) validation = Math.Clamp(validation, 1, items.Count - 1);
        var valid = order.Take(validation).Order().Select(i => items[i]).ToArray();
        var train = order.Skip(validation).Order().Select(i => items[i]).ToArray();
        return new DatasetSplit<T>(train, valid);
    }

    /// <summary>Fisher–Yates shuffle driven by <see cref="Random"/> seeded with <paramref name="seed"/> (stable across runs and platforms).</summary>
    /// <param name="values">The array to shuffle in place.</param>
    /// <param name="seed">The seed.</param>
    public static void Shuffle(int[] values, int seed)
    {
        ArgumentNullException.ThrowIfNull(values);
        var random = new Random(seed);
        for (int i = values.Length - 1; i > 0; i--)
        {
            int j = random.Next(i + 1);
            (values[i], values[j]) = (values[j], values[i]);
        }
    }
}
