namespace Peft.Generators.Tests;

/// <summary>User code plus generated code compiles with no warning or error against TorchSharp and Peft.Runtime.</summary>
public class CompileTests
{
    public static TheoryData<string> Cases() => SnapshotTests.Cases();

    [Theory]
    [MemberData(nameof(Cases))]
    public void InputAndGeneratedCodeCompileWithoutWarnings(string caseName)
    {
        string source = Sources.All.Single(c => c.Name == caseName).Source;
        var run = TestCompilation.Run(TestCompilation.Create(source));

        Assert.NotEmpty(run.Sources);
        var problems = TestCompilation.WarningsAndErrors(run.Output);
        Assert.True(problems.IsEmpty, TestCompilation.Describe(problems));
    }

    [Fact]
    public void AllCasesCompileTogether()
    {
        var run = TestCompilation.Run(TestCompilation.Create(Sources.All.Select(c => c.Source).ToArray()));

        Assert.Equal(13, run.Sources.Length);
        var problems = TestCompilation.WarningsAndErrors(run.Output);
        Assert.True(problems.IsEmpty, TestCompilation.Describe(problems));
    }

    [Fact]
    public void InputWithoutGeneratedCodeDoesNotCompile()
    {
        // Guards the compile tests: the inputs really depend on the generated InitializePeft().
        var compilation = TestCompilation.Create(Sources.Attention);

        Assert.Contains(compilation.GetDiagnostics(), d => d.Id == "CS0103" && d.GetMessage().Contains("InitializePeft"));
    }
}
