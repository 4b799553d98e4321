using Peft.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.Training;

/// <summary>Tests that draw from or seed TorchSharp's process-wide generators run alone, after the parallel ones.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class GlobalRandomCollection
{
    public const string Name = "Peft.Training global RNG";
}

/// <summary>Collects progress reports synchronously (unlike <see cref="Progress{T}"/>, which posts).</summary>
internal sealed class ListProgress : IProgress<TrainingProgress>
{
    public List<TrainingProgress> Reports { get; } = new();

    public void Report(TrainingProgress value) => Reports.Add(value);
}

/// <summary>
/// Fit Y = X W with W a 4x3 parameter: X [64, 4] and W_true [4, 3] drawn from a private generator (not the global
/// one), Y = X W_true exactly, loss = mean((X W - Y)^2). W starts at zero.
/// </summary>
internal sealed class LeastSquares : IDisposable
{
    public const int N = 64;
    public const int In = 4;
    public const int Out = 3;

    public LeastSquares(ulong seed = 1234)
    {
        using var generator = new torch.Generator(seed);
        X = randn(N, In, generator: generator);
        WTrue = randn(In, Out, generator: generator);
        Y = X.matmul(WTrue);
        W = new Parameter(zeros(In, Out));
    }

    public Tensor X { get; }

    public Tensor Y { get; }

    public Tensor WTrue { get; }

    public Parameter W { get; }

    public Tensor Loss() => (X.matmul(W) - Y).pow(2).mean();

    /// <summary>The loss at the current W, computed without autograd.</summary>
    public double CurrentLoss()
    {
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        return Loss().ToDouble();
    }

    public void Dispose()
    {
        X.Dispose();
        Y.Dispose();
        WTrue.Dispose();
        W.Dispose();
    }
}

/// <summary>Compares doubles within an absolute tolerance (for <c>Assert.Equal(expected, actual, comparer)</c>).</summary>
internal sealed class Tolerance(double tolerance) : IEqualityComparer<double>
{
    public bool Equals(double x, double y) => Math.Abs(x - y) <= tolerance;

    public int GetHashCode(double obj) => 0;
}

internal static class TensorBits
{
    public static double[] Doubles(Tensor t)
    {
        using var detached = t.detach().cpu();
        return detached.data<double>().ToArray();
    }

    public static float[] Values(Tensor t)
    {
        using var detached = t.detach();
        return detached.data<float>().ToArray();
    }

    /// <summary>The raw bit patterns, for bitwise comparisons (distinguishes -0 from 0 and keeps NaN payloads).</summary>
    public static int[] Bits(Tensor t) => Values(t).Select(BitConverter.SingleToInt32Bits).ToArray();

    public static double[,] ToDouble2D(Tensor t)
    {
        var values = Values(t);
        int rows = (int)t.shape[0], cols = (int)t.shape[1];
        var result = new double[rows, cols];
        for (int i = 0; i < rows; i++)
        {
            for (int j = 0; j < cols; j++)
            {
                result[i, j] = values[(i * cols) + j];
            }
        }

        return result;
    }
}
