using Peft.Training;

namespace Peft.Runtime.Tests.Training;

public class LearningRateScheduleTests
{
    private const double Peak = 1e-3;

    private static void Near(double expected, double actual) =>
        Assert.True(Math.Abs(expected - actual) <= 1e-15, $"expected {expected:R}, got {actual:R}");

    [Fact]
    public void WarmupRisesLinearlyFromPeakOverWarmupToPeak()
    {
        // W = 10, T = 110, floor = 1e-4.
        Near(1e-4, LearningRateSchedule.WarmupCosine(0, 10, 110, Peak, 0.1));
        Near(5e-4, LearningRateSchedule.WarmupCosine(4, 10, 110, Peak, 0.1));
        Near(1e-3, LearningRateSchedule.WarmupCosine(9, 10, 110, Peak, 0.1));
    }

    [Fact]
    public void CosineDecaysFromPeakToFloorAtTheLastStepAndStaysThere()
    {
        // Anchor a = W - 1 = 9, span = T - 1 - a = 100.
        // Step 10: p = 0.01; 1e-4 + 9e-4 * (1 + cos(0.01 pi)) / 2 = 9.99777952...e-4.
        Assert.Equal(9.9977795216e-4, LearningRateSchedule.WarmupCosine(10, 10, 110, Peak, 0.1), 1e-14);
        // Step 34: p = 0.25; 1e-4 + 9e-4 * (1 + sqrt(2)/2) / 2 = 8.68198052...e-4.
        Assert.Equal(8.6819805153e-4, LearningRateSchedule.WarmupCosine(34, 10, 110, Peak, 0.1), 1e-14);
        // Step 59: p = 0.5; halfway between peak and floor.
        Near(5.5e-4, LearningRateSchedule.WarmupCosine(59, 10, 110, Peak, 0.1));
        // Step 84: p = 0.75; 1e-4 + 9e-4 * (1 - sqrt(2)/2) / 2 = 2.31801948...e-4.
        Assert.Equal(2.3180194847e-4, LearningRateSchedule.WarmupCosine(84, 10, 110, Peak, 0.1), 1e-14);
        // Last step T - 1 = 109 is the floor, and the schedule is clamped after it.
        Near(1e-4, LearningRateSchedule.WarmupCosine(109, 10, 110, Peak, 0.1));
        Near(1e-4, LearningRateSchedule.WarmupCosine(110, 10, 110, Peak, 0.1));
        Near(1e-4, LearningRateSchedule.WarmupCosine(10_000, 10, 110, Peak, 0.1));
    }

    [Fact]
    public void WithoutWarmupTheFirstStepIsAtPeakAndTheLastAtZeroFloor()
    {
        Near(1e-3, LearningRateSchedule.WarmupCosine(0, 0, 101, Peak, 0.0));
        Near(5e-4, LearningRateSchedule.WarmupCosine(50, 0, 101, Peak, 0.0));
        Near(0.0, LearningRateSchedule.WarmupCosine(100, 0, 101, Peak, 0.0));
        Near(0.0, LearningRateSchedule.WarmupCosine(101, 0, 101, Peak, 0.0));
        // One warmup step reaches the peak at step 0, so it equals no warmup.
        for (int step = 0; step < 101; step++)
        {
            Assert.Equal(
                LearningRateSchedule.WarmupCosine(step, 0, 101, Peak, 0.2),
                LearningRateSchedule.WarmupCosine(step, 1, 101, Peak, 0.2));
        }
    }

    [Fact]
    public void ScheduleRisesThenNeverIncreasesAndStaysWithinFloorAndPeak()
    {
        const int warmup = 7, total = 53;
        double previous = 0;
        for (int step = 0; step < total + 5; step++)
        {
            double lr = LearningRateSchedule.WarmupCosine(step, warmup, total, Peak, 0.05);
            if (step < warmup)
            {
                Assert.True(lr > previous, $"warmup step {step}: {lr} <= {previous}");
            }
            else
            {
                Assert.True(lr <= previous, $"cosine step {step}: {lr} > {previous}");
                Assert.True(lr >= Peak * 0.05 && lr < Peak, $"cosine step {step}: {lr} outside [floor, peak)");
            }

            previous = lr;
        }
    }

    [Fact]
    public void WarmupSpanningEveryStepEndsAtPeakAndOneStepIsPeak()
    {
        Near(0.25e-3, LearningRateSchedule.WarmupCosine(0, 4, 4, Peak, 0.0));
        Near(1e-3, LearningRateSchedule.WarmupCosine(3, 4, 4, Peak, 0.0));
        Near(1e-3, LearningRateSchedule.WarmupCosine(9, 4, 4, Peak, 0.0));
        Near(1e-3, LearningRateSchedule.WarmupCosine(0, 0, 1, Peak, 0.0));
    }

    [Theory]
    [InlineData(-1, 0, 10, 1e-3, 0.0, "step")]
    [InlineData(0, -1, 10, 1e-3, 0.0, "warmupSteps")]
    [InlineData(0, 11, 10, 1e-3, 0.0, "warmupSteps")]
    [InlineData(0, 0, 0, 1e-3, 0.0, "totalSteps")]
    [InlineData(0, 0, 10, -1e-3, 0.0, "peak")]
    [InlineData(0, 0, 10, double.NaN, 0.0, "peak")]
    [InlineData(0, 0, 10, 1e-3, -0.1, "minRatio")]
    [InlineData(0, 0, 10, 1e-3, 1.1, "minRatio")]
    public void BadArgumentsThrowNamingTheArgument(int step, int warmup, int total, double peak, double minRatio, string name)
    {
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => LearningRateSchedule.WarmupCosine(step, warmup, total, peak, minRatio));
        Assert.Equal(name, ex.ParamName);
    }
}
